"""A token bucket per WebSocket connection: `rate` messages a second on average, bursts up to `burst`.

Pure: the caller passes the time (the event loop's monotonic clock), so tests need no sleeping.
"""

from __future__ import annotations


class TokenBucket:
    """Starts full; each message takes one token; tokens come back at `rate` a second up to `burst`."""

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> bool:
        """Whether a message arriving at `now` may pass (and, if so, count it)."""
        elapsed = max(0.0, now - self._updated)  # a clock that went backwards refills nothing
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._updated = max(self._updated, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        """Tokens left at the last `take` (for tests and metrics)."""
        return self._tokens
