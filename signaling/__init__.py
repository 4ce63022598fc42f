"""WebSocket signaling: rooms, waiting rooms, join tickets, TURN credentials (issue 5)."""
