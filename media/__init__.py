"""Server-side WebRTC: encoded-frame forwarding, recording, encryption at rest (issues 5-6)."""
