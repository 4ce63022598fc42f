"""The TOTP second factor: set-up, sign-in with it, replay refused; argon2 parameters upgrade on login."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pyotp
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import keys
from server.app import create_app
from server.auth.models import Role, User
from server.db.engine import transaction
from tests.conftest import make_settings
from tests.factories import PASSWORD, create_staff, register_patient


async def test_mfa_setup_then_login_requires_code(client: TestClient) -> None:
    expert = await create_staff(client, Role.qa_expert)
    setup = await client.post("/api/v1/auth/mfa/totp", headers=expert.auth)
    assert setup.status == 200
    secret = (await setup.json())["secret"]
    totp = pyotp.TOTP(secret)
    wrong = await client.post("/api/v1/auth/mfa/totp/confirm", headers=expert.auth, json={"code": "000000"
                              if totp.now() != "000000" else "111111"})
    assert wrong.status == 422
    confirmed = await client.post("/api/v1/auth/mfa/totp/confirm", headers=expert.auth, json={"code": totp.now()})
    assert confirmed.status == 200

    no_code = await client.post("/api/v1/auth/login", json={"email": expert.email, "password": PASSWORD})
    assert no_code.status == 401
    assert (await no_code.json())["code"] == "otp_required"
    # The code of the step just used for confirmation is spent; the next step's code signs in.
    later = totp.at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30))
    ok = await client.post("/api/v1/auth/login", json={"email": expert.email, "password": PASSWORD, "otp": later})
    assert ok.status == 200
    replay = await client.post("/api/v1/auth/login", json={"email": expert.email, "password": PASSWORD, "otp": later})
    assert replay.status == 401
    assert (await replay.json())["code"] == "invalid_credentials"


async def test_mfa_admin_step_up_unlocks_admin_endpoints(client: TestClient) -> None:
    boss = await create_staff(client, Role.admin)
    assert (await client.get("/api/v1/admin/users", headers=boss.auth)).status == 403
    secret = (await (await client.post("/api/v1/auth/mfa/totp", headers=boss.auth)).json())["secret"]
    confirmed = await client.post("/api/v1/auth/mfa/totp/confirm", headers=boss.auth,
                                  json={"code": pyotp.TOTP(secret).now()})
    token = (await confirmed.json())["access_token"]
    listed = await client.get("/api/v1/admin/users", headers={"Authorization": f"Bearer {token}"})
    assert listed.status == 200


async def test_mfa_not_offered_to_patients(client: TestClient) -> None:
    patient = await register_patient(client)
    response = await client.post("/api/v1/auth/mfa/totp", headers=patient.auth)
    assert response.status == 403


async def test_password_hash_upgrades_when_parameters_change(aiohttp_client: Any, tmp_path: Path,
                                                             database_url: str) -> None:
    """A node configured with costlier argon2 parameters re-hashes each password at its owner's next login."""
    old = await aiohttp_client(create_app(make_settings(tmp_path / "old", database_url)))
    patient = await register_patient(old, signed_in=False)
    new_app = create_app(make_settings(tmp_path / "new", database_url, argon2_time_cost=2, argon2_memory_kib=2048))
    new = await aiohttp_client(new_app)

    async def stored_hash() -> str:
        async with transaction(new_app[keys.sessions]) as session:
            return (await session.scalars(select(User.password_hash).where(User.email == patient.email))).one()

    before = await stored_hash()
    assert (await new.post("/api/v1/auth/login", json={"email": patient.email, "password": PASSWORD})).status == 200
    after = await stored_hash()
    assert "m=1024,t=1" in before
    assert "m=2048,t=2" in after
    # The old node still verifies the upgraded hash: parameters travel inside it.
    assert (await old.post("/api/v1/auth/login", json={"email": patient.email, "password": PASSWORD})).status == 200


async def test_mfa_one_code_signs_in_once_even_in_parallel(client: TestClient) -> None:
    """Several simultaneous sign-ins with one valid code: exactly one succeeds (on PostgreSQL too)."""
    staff = await create_staff(client, Role.physician, with_totp=True, signed_in=False)
    code = pyotp.TOTP(staff.totp_secret or "").now()
    body = {"email": staff.email, "password": PASSWORD, "otp": code}
    responses = await asyncio.gather(*[client.post("/api/v1/auth/login", json=body) for _ in range(4)])
    assert sorted(r.status for r in responses) == [200, 401, 401, 401]
