"""Recording consultations: encrypted segments written live, finalised into WebM, streamed back for playback.

Design and measurements: docs/recording.md.
"""
