"""The append-only, hash-chained log of every access to health data and every security event."""
