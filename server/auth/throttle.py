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
    """Counts every attempt before the password is checked.

    Counting first is what makes the limit hold under parallel requests: `hit` checks and counts in
    one step (in memory and in Redis), so 40 simultaneous guesses get 5 checks, not 40. A successful
    sign-in clears its account's count; the address count keeps running, which also bounds how many
    argon2 hashes one address can make us compute.
    """

    def __init__(self, storage_url: str, *, per_account: int, per_ip: int, window_seconds: int,
                 registrations_per_ip: int = 10, registration_window_seconds: int = 3600) -> None:
        # Store failures surface as StorageError, so a Redis outage becomes a clear 503, not a 500.
        options = {} if storage_url.startswith("async+memory") else {"wrap_exceptions": True}
        self.storage = cast(AsyncStorage, storage_from_string(storage_url, **options))
        if not isinstance(self.storage, AsyncStorage):
            raise ValueError("the rate limit store must be an async one (async+memory://, async+redis://...)")
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.account_limit = RateLimitItemPerSecond(per_account, window_seconds)
        self.ip_limit = RateLimitItemPerSecond(per_ip, window_seconds)
        self.registration_limit = RateLimitItemPerSecond(registrations_per_ip, registration_window_seconds)

    async def _take(self, pairs: list[tuple[RateLimitItemPerSecond, str, str]]) -> int | None:
        """Count one attempt against each limit; seconds to wait if any refuses, else None."""
        try:
            for limit, kind, key in pairs:
                if not await self.limiter.hit(limit, "login", kind, key):
                    stats = await self.limiter.get_window_stats(limit, "login", kind, key)
                    return max(1, int(stats.reset_time - time.time()) + 1)
        except StorageError:
            raise ThrottleUnavailable() from None  # fail closed: an outage must not lift the limit
        return None

    async def attempt(self, account: str, ip: str | None) -> int | None:
        """Count a sign-in attempt (the address first, so a refused address spends no account budget)."""
        pairs = [(self.ip_limit, "ip", _key(ip))] if ip else []
        return await self._take([*pairs, (self.account_limit, "account", _key(account.strip().lower()))])

    async def registration(self, ip: str | None) -> int | None:
        """Count an account creation from this address: each costs a hash and could probe for e-mails."""
        return await self._take([(self.registration_limit, "register", _key(ip))]) if ip else None

    async def succeeded(self, account: str) -> None:
        try:
            await self.limiter.clear(self.account_limit, "login", "account", _key(account.strip().lower()))
        except StorageError:
            raise ThrottleUnavailable() from None
