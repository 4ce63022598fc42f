"""argon2id hashing: correct answers, and never on the event loop."""

from __future__ import annotations

import asyncio

from server.auth.passwords import Passwords


async def test_passwords_verify_right_and_wrong_and_unknown() -> None:
    passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
    stored = await passwords.hash("a patient's password")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "a patient's password")
    assert not await passwords.verify(stored, "a guess")
    assert not await passwords.verify(None, "a patient's password")  # unknown account
    assert not await passwords.verify("not a hash", "x")
    passwords.close()


async def test_passwords_hashing_leaves_the_event_loop_free() -> None:
    """While a costly verify runs, other coroutines keep running; on the loop they would get no turn at all."""
    passwords = Passwords(time_cost=3, memory_kib=65536, parallelism=4)  # production cost
    stored = await passwords.hash("x" * 12)
    turns = 0
    done = False

    async def other_requests() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_requests())
    assert await passwords.verify(stored, "x" * 12)
    done = True
    await ticker
    passwords.close()
    assert turns > 1
