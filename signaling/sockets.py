"""How many signaling sockets one address holds open: a browser needs one per tab, a flood needs many.

Every socket costs the server memory and a task until its `join` (or the join timeout, seconds later); without
a cap, one address could open thousands before any ticket is checked. Counted per node, in memory: the cap
is about this process's resources.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from server.http.problems import TooManyRequests

RETRY_AFTER_SECONDS = 10


class SocketsPerAddress:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def open(self, address: str | None) -> int:
        return self._open[address or "unknown"]

    @contextmanager
    def hold(self, address: str | None) -> Iterator[None]:
        """Count a socket from `address` while the block runs; 429 (before any upgrade) beyond the limit."""
        key = address or "unknown"
        if self._open[key] >= self.limit:
            raise TooManyRequests(RETRY_AFTER_SECONDS, "Too many open call connections from this address")
        self._open[key] += 1
        try:
            yield
        finally:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
