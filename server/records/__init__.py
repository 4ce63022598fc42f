"""The medical record: the physician's consultation protocol (drafts, signed versions, their PDFs)."""
