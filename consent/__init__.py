"""Informed consent: versioned templates, signed documents, the gate before every call (issue 4)."""
