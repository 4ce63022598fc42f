"""Password hashing with argon2id; parameters come from settings and old hashes are upgraded at login.

A hash at production cost takes a core for ~0.1 s and 64 MiB: run on the event loop it would stall
every other request (and call signaling) meanwhile. argon2-cffi releases the GIL, so hashing runs on a
small pool of threads, one per core, which also bounds how much memory concurrent sign-ins can take.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from server.settings import Settings


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="argon2")
        # Verifying against this when the account does not exist keeps the answer's timing the same.
        self._dummy = self._hasher.hash("no such account")

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                   parallelism=settings.argon2_parallelism)

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True only for the right password; an unknown account costs the same time as a known one."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
