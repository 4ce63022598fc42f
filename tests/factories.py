"""Building real accounts through the real services and endpoints."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any

import pyotp
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import keys
from server.audit.services import AuditContext
from server.auth import totp
from server.auth.models import Role, User
from server.db.base import utcnow
from server.db.engine import transaction
from server.people import services as people

_counter = itertools.count(1)
PASSWORD = "correct horse battery"


@dataclass
class Account:
    email: str
    password: str
    user_id: str
    role: str
    access_token: str = ""
    refresh_token: str = ""
    totp_secret: str | None = None
    patient_id: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(client: TestClient, account: Account, *, otp: str | None = None) -> Account:
    body: dict[str, Any] = {"email": account.email, "password": account.password}
    if otp or account.totp_secret:
        body["otp"] = otp or pyotp.TOTP(account.totp_secret or "").now()
    response = await client.post("/api/v1/auth/login", json=body)
    assert response.status == 200, await response.text()
    tokens = await response.json()
    account.access_token, account.refresh_token = tokens["access_token"], tokens["refresh_token"]
    return account


async def register_patient(client: TestClient, *, email: str | None = None, full_name: str = "Test Patient",
                           signed_in: bool = True) -> Account:
    email = email or f"patient{next(_counter)}@example.org"
    response = await client.post("/api/v1/auth/register", json={
        "email": email, "password": PASSWORD, "full_name": full_name, "birth_date": "1950-05-01",
        "phone": "+79160001122", "locale": "en",
    })
    assert response.status == 201, await response.text()
    body = await response.json()
    account = Account(email, PASSWORD, body["user"]["id"], "patient", patient_id=body["patient"]["id"])
    return await login(client, account) if signed_in else account


async def create_staff(client: TestClient, role: Role, *, email: str | None = None, with_totp: bool = False,
                       full_name: str | None = None, signed_in: bool = True) -> Account:
    app: web.Application = client.app
    email = email or f"{role.value}{next(_counter)}@clinic.example"
    extra: dict[str, str] = {}
    if role is Role.physician:
        extra = {"specialty": "cardiology", "licence_number": "77-01-1", "time_zone": "Europe/Moscow"}
    secret = None
    async with transaction(app[keys.sessions]) as session:
        user: User = await people.create_staff(
            session, passwords=app[keys.passwords], role=role, email=email, password=PASSWORD,
            full_name=full_name or f"Staff {role.value}", ctx=AuditContext(actor_role="test"), now=utcnow(),
            **extra)
        if with_totp:
            secret = totp.new_secret()
            user.totp_secret_encrypted = totp.encrypt_secret(
                app[keys.key_material].derive("totp-secrets"), secret, user_id=user.id.bytes)
            user.totp_enabled_at = utcnow() - dt.timedelta(minutes=5)
        user_id = str(user.id)
    account = Account(email, PASSWORD, user_id, role.value, totp_secret=secret)
    return await login(client, account) if signed_in else account


async def admin(client: TestClient) -> Account:
    """An administrator signed in with their second factor, as admin endpoints require."""
    return await create_staff(client, Role.admin, with_totp=True)
