"""Live waiting-room updates for physicians' dashboards, within one web process.

Plain asyncio queues per physician: bounded, so a stalled browser drops its oldest events instead of
growing memory (the page reloads the list on reconnect, so nothing is lost). Several web nodes will
share events through Redis (ARCHITECTURE: the signaling bus); until then one node serves them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any


class WaitingRoomBus:
    def __init__(self, queue_size: int = 100) -> None:
        self._queues: dict[uuid.UUID, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._size = queue_size

    def subscribe(self, physician_id: uuid.UUID) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._size)
        self._queues[physician_id].add(queue)
        return queue

    def unsubscribe(self, physician_id: uuid.UUID, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues[physician_id].discard(queue)
        if not self._queues[physician_id]:
            del self._queues[physician_id]

    def publish(self, physician_id: uuid.UUID, event: dict[str, Any]) -> None:
        """Tell every open dashboard of this physician; events carry ids and states, never health data."""
        for queue in self._queues.get(physician_id, set()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def listeners(self, physician_id: uuid.UUID) -> int:
        return len(self._queues.get(physician_id, ()))
