"""A demo clinic for `make serve`: an admin, three physicians with their hours, two QA experts, two patients.

Passwords are random per installation and shown once; nothing guessable ships in the code.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import templates
from qa_audit import checklists
from server.audit.services import SYSTEM, AuditContext
from server.auth import totp
from server.auth.models import Role, User
from server.auth.passwords import Passwords
from server.db.base import utcnow
from server.keyring import load_key_material
from server.people import services as people
from server.people.models import Physician
from server.scheduling import conditions
from server.scheduling.catalogue import load_conditions, load_questionnaires
from server.scheduling.models import WeeklyAvailability
from server.settings import Settings


@dataclass(frozen=True)
class DemoAccount:
    role: str
    email: str
    password: str
    full_name: str
    totp_secret: str | None = None


def _password() -> str:
    return secrets.token_urlsafe(12)


STAFF: list[tuple[Role, str, str, dict[str, Any]]] = [
    (Role.admin, "admin@demo.clinic", "Анна Администраторова", {}),
    (Role.physician, "therapist@demo.clinic", "Иван Петрович Терапевтов",
     {"specialty": "general_practice", "licence_number": "77-01-000101", "time_zone": "Europe/Moscow",
      "department": "therapy"}),
    (Role.physician, "cardiologist@demo.clinic", "Мария Сергеевна Кардиологова",
     {"specialty": "cardiology", "licence_number": "77-01-000102", "time_zone": "Europe/Moscow",
      "department": "cardiology"}),
    # On duty round the clock, every day: whoever tries the demo can book a slot starting within minutes
    # and hold a video consultation at once, on a weekend or at night too.
    (Role.physician, "duty@demo.clinic", "Сергей Андреевич Дежурный",
     {"specialty": "general_practice", "licence_number": "77-01-000103", "time_zone": "Europe/Moscow",
      "department": "therapy"}),
    # Two experts, so that a physician's dispute can go to a second one.
    (Role.qa_expert, "qa@demo.clinic", "Ольга Николаевна Экспертова",
     {"specialty": "general_practice", "department": "quality"}),
    (Role.qa_expert, "qa2@demo.clinic", "Дмитрий Олегович Аудитов", {"specialty": "cardiology",
                                                                    "department": "quality"}),
]
PATIENTS = [
    ("patient1@demo.clinic", "Пётр Иванович Пациентов", dt.date(1956, 3, 14), "+79160000001", "ru"),
    ("patient2@demo.clinic", "Jane Patient", dt.date(1988, 9, 2), "+79160000002", "en"),
]
# Mornings and afternoons, Monday to Friday, in 20-minute slots: the clinic's usual week.
WEEK_HOURS = [(dt.time(9, 0), dt.time(13, 0)), (dt.time(14, 0), dt.time(18, 0))]
DUTY_EMAIL = "duty@demo.clinic"
DUTY_HOURS = [(dt.time(0, 0), dt.time(23, 40))]  # every day, 20-minute slots from midnight to 23:40


async def seed(session: AsyncSession, settings: Settings, *, passwords: Passwords) -> list[DemoAccount] | None:
    """Create the demo clinic, or return None when the database already has accounts."""
    if (await session.scalar(select(func.count()).select_from(User))) != 0:
        return None
    now = utcnow()
    await conditions.seed_catalogue(session, conditions=load_conditions(), questionnaires=load_questionnaires(),
                                    now=now)
    ctx = AuditContext(actor_role="system", request_id="demo-seed")
    await templates.seed_defaults(session, ctx=ctx, now=now)  # patients sign these before their first call
    await checklists.seed_default(session)  # the QA experts' checklist
    totp_key = load_key_material(settings).derive("totp-secrets")
    accounts: list[DemoAccount] = []
    for role, email, name, extra in STAFF:
        password = _password()
        user = await people.create_staff(session, passwords=passwords, role=role, email=email, password=password,
                                         full_name=name, ctx=ctx, now=now, **extra)
        secret = None
        if role is Role.admin:
            # Admins must use a second factor; the demo admin comes enrolled, its secret shown below.
            secret = totp.new_secret()
            user.totp_secret_encrypted = totp.encrypt_secret(totp_key, secret, user_id=user.id.bytes)
            user.totp_enabled_at = now
        accounts.append(DemoAccount(role.value, email, password, name, secret))
    for email, name, birth, phone, locale in PATIENTS:
        password = _password()
        await people.register_patient(session, passwords=passwords, email=email, password=password,
                                      full_name=name, birth_date=birth, phone=phone, locale=locale, ctx=SYSTEM,
                                      now=now)
        accounts.append(DemoAccount("patient", email, password, name))
    rows = (await session.execute(select(Physician.id, User.email).join(User, User.id == Physician.user_id))).all()
    for physician_id, email in rows:
        on_duty = email == DUTY_EMAIL
        for weekday in range(7 if on_duty else 5):
            for start, end in DUTY_HOURS if on_duty else WEEK_HOURS:
                session.add(WeeklyAvailability(physician_id=physician_id, weekday=weekday, start_time=start,
                                               end_time=end, slot_minutes=20))
    await session.flush()
    return accounts


def render_accounts(accounts: list[DemoAccount], url: str, saved_to: Path) -> str:
    lines = [f"Demo clinic at {url}  (shown once; also saved to {saved_to}, mode 0600)", ""]
    for account in accounts:
        lines.append(f"  {account.role:<10} {account.email:<28} password: {account.password}")
        if account.totp_secret:
            lines.append(f"  {'':<10} TOTP secret for an authenticator app: {account.totp_secret}")
            lines.append(f"  {'':<10} (or run: python -m server demo otp {account.email})")
    return "\n".join(lines) + "\n"


def write_accounts_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
