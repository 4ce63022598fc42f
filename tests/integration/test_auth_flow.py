"""Registration, sign-in, refresh rotation and reuse detection, logout, /me."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.conftest import make_settings
from tests.factories import PASSWORD, login, register_patient


async def test_register_then_me_shows_profile(client: TestClient) -> None:
    patient = await register_patient(client, full_name="Анна Иванова")
    response = await client.get("/api/v1/me", headers=patient.auth)
    assert response.status == 200
    body = await response.json()
    assert body["user"]["role"] == "patient"
    assert body["user"]["full_name"] == "Анна Иванова"
    assert body["patient"]["birth_date"] == "1950-05-01"
    assert body["physician"] is None


async def test_login_returns_the_fixed_token_shape(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    response = await client.post("/api/v1/auth/login", json={"email": patient.email.upper(), "password": PASSWORD})
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900


async def test_bad_password_and_unknown_account_answer_alike(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    wrong = await client.post("/api/v1/auth/login", json={"email": patient.email, "password": "wrong password"})
    unknown = await client.post("/api/v1/auth/login", json={"email": "nobody@example.org", "password": "whatever"})
    assert wrong.status == unknown.status == 401
    wrong_body, unknown_body = await wrong.json(), await unknown.json()
    assert wrong_body["code"] == unknown_body["code"] == "invalid_credentials"
    assert wrong_body["detail"] == unknown_body["detail"]
    assert wrong.headers["Content-Type"].startswith("application/problem+json")


async def test_refresh_rotates_and_old_token_is_spent(client: TestClient) -> None:
    patient = await register_patient(client)
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": patient.refresh_token})
    assert first.status == 200
    rotated = await first.json()
    assert rotated["refresh_token"] != patient.refresh_token
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert me.status == 200


async def test_refresh_reuse_revokes_the_whole_family(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    """A spent token presented again (past the race window) means it was copied: the session ends."""
    client = await aiohttp_client(create_app(make_settings(tmp_path, database_url, refresh_race_seconds=0)))
    patient = await register_patient(client)
    stolen = patient.refresh_token
    legit = await (await client.post("/api/v1/auth/refresh", json={"refresh_token": stolen})).json()
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": stolen})
    assert replay.status == 401
    assert (await replay.json())["code"] == "invalid_refresh_token"
    # The legitimate holder's newer tokens died with the family.
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": legit["refresh_token"]})
    assert again.status == 401
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {legit['access_token']}"})
    assert me.status == 401


async def test_logout_revokes_access_and_refresh_tokens(client: TestClient) -> None:
    patient = await register_patient(client)
    response = await client.post("/api/v1/auth/logout", headers=patient.auth)
    assert response.status == 204
    assert (await client.get("/api/v1/me", headers=patient.auth)).status == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": patient.refresh_token})
    assert refresh.status == 401


async def test_other_sessions_survive_one_logout(client: TestClient) -> None:
    patient = await register_patient(client)
    phone_token = patient.access_token
    await login(client, patient)  # a second device
    await client.post("/api/v1/auth/logout", headers=patient.auth)
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {phone_token}"})).status == 200


async def test_duplicate_registration_is_a_conflict_naming_the_field(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    response = await client.post("/api/v1/auth/register", json={
        "email": patient.email, "password": PASSWORD, "full_name": "X", "birth_date": "1990-01-01",
        "phone": "+79160001122"})
    assert response.status == 409
    body = await response.json()
    assert body["code"] == "email_taken"
    assert body["errors"][0]["field"] == "email"


async def test_me_without_token_is_401_problem(client: TestClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["type"] == "/problems/unauthorized"


async def test_refresh_race_between_two_tabs_keeps_the_session(client: TestClient) -> None:
    """Two tabs refreshing with the same token at once: one wins, the other is refused, nobody is logged out."""
    patient = await register_patient(client)
    first, second = await asyncio.gather(
        client.post("/api/v1/auth/refresh", json={"refresh_token": patient.refresh_token}),
        client.post("/api/v1/auth/refresh", json={"refresh_token": patient.refresh_token}),
    )
    assert sorted([first.status, second.status]) == [200, 401]
    winner = await (first if first.status == 200 else second).json()
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {winner['access_token']}"})
    assert me.status == 200
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": winner["refresh_token"]})
    assert again.status == 200
