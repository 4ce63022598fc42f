"""Login throttling: per account and per address, in memory on one node and in a real Redis across nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.conftest import make_settings
from tests.factories import PASSWORD, register_patient
from tests.services import RedisServer, redis_server, stop

ATTEMPTS = 3
WINDOW = 2  # seconds; short, so a test can wait the window out


@pytest.fixture
def redis_instance() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def _node(aiohttp_client: Any, tmp_path: Path, database_url: str, **overrides: Any) -> TestClient:
    """One app instance (a node) on the shared database, with a short throttle window."""
    values: dict[str, Any] = {"login_attempts_per_account": ATTEMPTS, "login_attempts_per_ip": 100,
                              "login_window_seconds": WINDOW}
    values.update(overrides)
    return await aiohttp_client(create_app(make_settings(tmp_path, database_url, **values)))


async def _login(client: TestClient, email: str, password: str) -> ClientResponse:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def _warm_up(client: TestClient) -> None:
    """Pay what a first sign-in costs (the throttle store's connection, lazy set-up) on another account, so that
    the attempts a test then makes fall well inside the short window even on a slow machine."""
    await _login(client, "warm-up@example.org", "wrong password!")


async def _exhaust(client: TestClient, email: str, attempts: int = ATTEMPTS) -> None:
    for attempt in range(attempts):
        response = await _login(client, email, "wrong password!")
        assert response.status == 401, f"attempt {attempt + 1}: {await response.text()}"


def _retry_after(response: ClientResponse) -> int:
    """The Retry-After of a 429, checked to be a whole number of seconds no longer than the window needs."""
    assert response.status == 429
    assert response.headers["Content-Type"].startswith("application/problem+json")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW + 1
    return retry_after


async def _assert_throttled_then_recovers(client: TestClient, email: str) -> None:
    refused = await _login(client, email, "wrong password!")
    retry_after = _retry_after(refused)
    assert (await refused.json())["code"] == "too_many_requests"
    # While throttled even the right password is refused: the limit is on attempts, not on guesses.
    _retry_after(await _login(client, email, PASSWORD))
    await asyncio.sleep(retry_after)
    allowed = await _login(client, email, PASSWORD)
    assert allowed.status == 200, await allowed.text()


async def test_login_throttle_in_memory_refuses_after_limit_until_window_passes(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    client = await _node(aiohttp_client, tmp_path, database_url)
    patient = await register_patient(client, signed_in=False)
    await _warm_up(client)
    await _exhaust(client, patient.email)
    await _assert_throttled_then_recovers(client, patient.email)


async def test_login_throttle_limits_failures_per_ip_across_accounts(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    client = await _node(aiohttp_client, tmp_path, database_url, login_attempts_per_account=100,
                         login_attempts_per_ip=ATTEMPTS)
    patient = await register_patient(client, signed_in=False)
    for index in range(ATTEMPTS):  # a different account each time, all from the same address
        await _exhaust(client, f"guess{index}@example.org", attempts=1)
    await _assert_throttled_then_recovers(client, patient.email)


@pytest.mark.redis
async def test_login_throttle_on_redis_refuses_after_limit_until_window_passes(
        aiohttp_client: Any, tmp_path: Path, database_url: str, redis_instance: RedisServer) -> None:
    client = await _node(aiohttp_client, tmp_path, database_url, rate_limit_storage_url=redis_instance.limits_url)
    patient = await register_patient(client, signed_in=False)
    await _warm_up(client)
    await _exhaust(client, patient.email)
    await _assert_throttled_then_recovers(client, patient.email)


@pytest.mark.redis
async def test_login_throttle_on_redis_is_shared_between_nodes(
        aiohttp_client: Any, tmp_path: Path, database_url: str, redis_instance: RedisServer) -> None:
    first = await _node(aiohttp_client, tmp_path, database_url, rate_limit_storage_url=redis_instance.limits_url)
    second = await _node(aiohttp_client, tmp_path, database_url, rate_limit_storage_url=redis_instance.limits_url)
    assert first.app is not second.app
    patient = await register_patient(first, signed_in=False)
    await _warm_up(first)
    await _warm_up(second)
    await _exhaust(first, patient.email)
    # The second node never saw a failure itself, yet refuses: the count lives in Redis.
    await _assert_throttled_then_recovers(second, patient.email)


@pytest.mark.redis
async def test_login_throttle_fails_closed_when_redis_is_unreachable(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_instance: RedisServer
) -> None:
    """Losing the shared store must not lift the limit: sign-in answers 503, never 500 and never unthrottled."""
    client = await _node(aiohttp_client, tmp_path, database_url, rate_limit_storage_url=redis_instance.limits_url)
    patient = await register_patient(client, signed_in=False)
    stop(redis_instance.process, timeout=10)
    response = await _login(client, patient.email, PASSWORD)
    assert response.status == 503
    body = await response.json()
    assert body["code"] == "sign_in_unavailable"
    assert response.headers["Retry-After"] == "30"
