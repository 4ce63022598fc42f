"""The sign-in limits hold under parallel requests, forged addresses, and mass registration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.conftest import make_settings
from tests.factories import PASSWORD, register_patient


async def test_throttle_parallel_guesses_get_only_the_allowed_checks(aiohttp_client: Any, tmp_path: Path,
                                                                     database_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, database_url, login_attempts_per_account=5)))
    patient = await register_patient(client, signed_in=False)
    body = {"email": patient.email, "password": "a wrong guess"}
    responses = await asyncio.gather(*[client.post("/api/v1/auth/login", json=body) for _ in range(40)])
    statuses = [r.status for r in responses]
    assert statuses.count(401) == 5
    assert statuses.count(429) == 35


async def test_throttle_uses_the_address_our_proxy_saw(aiohttp_client: Any, tmp_path: Path,
                                                       database_url: str) -> None:
    """Behind a trusted proxy the client controls the left of X-Forwarded-For, not the right."""
    settings = make_settings(tmp_path, database_url, trust_forwarded_headers=True, login_attempts_per_ip=3,
                             login_attempts_per_account=100)
    client: TestClient = await aiohttp_client(create_app(settings))
    for forged in range(3):
        response = await client.post("/api/v1/auth/login", json={"email": f"x{forged}@e.org", "password": "p"},
                                     headers={"X-Forwarded-For": f"10.0.0.{forged}, 203.0.113.9"})
        assert response.status == 401
    refused = await client.post("/api/v1/auth/login", json={"email": "y@e.org", "password": "p"},
                                headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.9"})
    assert refused.status == 429
    other = await client.post("/api/v1/auth/login", json={"email": "y@e.org", "password": "p"},
                              headers={"X-Forwarded-For": "203.0.113.10"})
    assert other.status == 401  # a different real address has its own budget


async def test_throttle_limits_registrations_per_address(aiohttp_client: Any, tmp_path: Path,
                                                         database_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, database_url,
                                                           registrations_per_ip_per_hour=2)))
    await register_patient(client, signed_in=False)
    await register_patient(client, signed_in=False)
    response = await client.post("/api/v1/auth/register", json={
        "email": "third@example.org", "password": PASSWORD, "full_name": "T", "birth_date": "1980-01-01",
        "phone": "+79160001122"})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
