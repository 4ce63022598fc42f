"""Rotating the master key keeps staff able to sign in with their second factor: a TOTP secret encrypted under
the retired key still opens (TELEMED_MASTER_PREVIOUS_KEYS) and is re-encrypted under the new key at sign-in."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import pyotp

from server import keys
from server.app import create_app
from server.auth import totp
from server.auth.models import Role, User
from tests.conftest import make_settings
from tests.factories import create_staff


async def test_a_second_factor_survives_a_master_key_rotation(aiohttp_client: Any, tmp_path: Path,
                                                              database_url: str) -> None:
    before = await aiohttp_client(create_app(make_settings(tmp_path, database_url)))
    boss = await create_staff(before, Role.admin, with_totp=True, signed_in=False)
    key_a = (tmp_path / "var" / "keys" / "master.key").read_text().strip()  # generated on first run
    key_b = base64.b64encode(secrets.token_bytes(32)).decode()

    rotated = await aiohttp_client(create_app(make_settings(tmp_path, database_url, master_key=key_b,
                                                            master_previous_keys=[key_a])))
    code = pyotp.TOTP(boss.totp_secret or "").now()
    signed_in = await rotated.post("/api/v1/auth/login", json={"email": boss.email, "password": boss.password,
                                                                "otp": code})
    assert signed_in.status == 200, await signed_in.text()

    async with rotated.app[keys.read_sessions]() as session:
        user = await session.get(User, uuid.UUID(boss.user_id))
        assert user is not None
        assert user.totp_secret_encrypted is not None
        stored = user.totp_secret_encrypted
    new_key = rotated.app[keys.key_material].derive("totp-secrets")
    assert totp.decrypt_secret(new_key, stored, user_id=user.id.bytes) == boss.totp_secret  # re-encrypted

    only_b = await aiohttp_client(create_app(make_settings(tmp_path, database_url, master_key=key_b)))
    later = pyotp.TOTP(boss.totp_secret or "").at(time.time() + 30)  # the next step: a fresh code
    again = await only_b.post("/api/v1/auth/login", json={"email": boss.email, "password": boss.password,
                                                         "otp": later})
    assert again.status == 200, await again.text()  # the retired key is no longer needed
