"""The telemedicine service's composition root and core domains (see ARCHITECTURE.md)."""
