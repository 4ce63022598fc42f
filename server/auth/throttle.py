"""Login throttling per account and per client address (moving window, the `limits` package).

Only failures count, so a user who types their password right is never slowed by their own logins;
the store is memory on one node and Redis when several nodes must share the count.
"""

from __future__ import annotations

import hashlib
import time
from typing import cast

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from server.http.problems import ProblemError


class ThrottleUnavailable(ProblemError):
    status, code, title = 503, "sign_in_unavailable", "Signing in is briefly unavailable"

    def __init__(self) -> None:
        super().__init__("The sign-in limiter cannot be reached; try again in a minute", headers={"Retry-After": "30"})


def _key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]  # no e-mail or address in the store


class LoginThrottle:
    def __init__(self, storage_url: str, *, per_account: int, per_ip: int, window_seconds: int) -> None:
        # Store failures surface as StorageError, so a Redis outage becomes a clear 503, not a 500.
        options = {} if storage_url.startswith("async+memory") else {"wrap_exceptions": True}
        self.storage = cast(AsyncStorage, storage_from_string(storage_url, **options))
        if not isinstance(self.storage, AsyncStorage):
            raise ValueError("the rate limit store must be an async one (async+memory://, async+redis://...)")
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.account_limit = RateLimitItemPerSecond(per_account, window_seconds)
        self.ip_limit = RateLimitItemPerSecond(per_ip, window_seconds)

    def _pairs(self, account: str, ip: str | None) -> list[tuple[RateLimitItemPerSecond, str, str]]:
        pairs = [(self.account_limit, "account", _key(account.lower()))]
        if ip:
            pairs.append((self.ip_limit, "ip", _key(ip)))
        return pairs

    async def retry_after(self, account: str, ip: str | None) -> int | None:
        """Seconds until another attempt is allowed, or None if one is allowed now.

        If the store cannot be asked, sign-in fails closed: an outage must not lift the limit.
        """
        try:
            for limit, kind, key in self._pairs(account, ip):
                if not await self.limiter.test(limit, "login", kind, key):
                    stats = await self.limiter.get_window_stats(limit, "login", kind, key)
                    return max(1, int(stats.reset_time - time.time()) + 1)
        except StorageError:
            raise ThrottleUnavailable() from None
        return None

    async def failed(self, account: str, ip: str | None) -> None:
        try:
            for limit, kind, key in self._pairs(account, ip):
                await self.limiter.hit(limit, "login", kind, key)
        except StorageError:
            raise ThrottleUnavailable() from None

    async def succeeded(self, account: str) -> None:
        try:
            await self.limiter.clear(self.account_limit, "login", "account", _key(account.lower()))
        except StorageError:
            raise ThrottleUnavailable() from None

    async def check_storage(self) -> bool:
        return bool(await self.storage.check())
