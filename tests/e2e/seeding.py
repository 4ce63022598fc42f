"""The clinic a browser test starts from, written straight into the live server's database: the catalogue, a
physician working round the clock (so a slot is always near) and a patient."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.services import AuditContext
from server.auth.models import Role, User
from server.auth.passwords import Passwords
from server.people import services as people
from server.people.models import Patient, Physician
from server.scheduling import availability, conditions, rules
from server.scheduling.catalogue import load_conditions, load_questionnaires
from tests.factories import PASSWORD

DOCTOR_EMAIL = "doctor@clinic.example"
PASSWORDS = Passwords(time_cost=1, memory_kib=1024, parallelism=1)


@dataclass(frozen=True)
class Seeded:
    physician: Physician
    user: User
    patient: Patient


async def seed_clinic(session: AsyncSession, *, patient_email: str, patient_name: str, birth_date: dt.date,
                      phone: str, ctx: AuditContext, now: dt.datetime) -> Seeded:
    await conditions.seed_catalogue(session, conditions=load_conditions(), questionnaires=load_questionnaires(),
                                    now=now)
    doctor = await people.create_staff(
        session, passwords=PASSWORDS, role=Role.physician, email=DOCTOR_EMAIL, password=PASSWORD,
        full_name="Иван Петрович Терапевтов", specialty="general_practice", licence_number="77-1",
        time_zone="Europe/Moscow", ctx=ctx, now=now)
    physician = (await people.profile(session, user_id=doctor.id)).physician
    assert physician is not None
    hours = [rules.WeeklyHours(day, rules.Hours(dt.time(0), dt.time(23, 59), 20)) for day in range(7)]
    await availability.replace_weekly_hours(session, physician_id=physician.id, hours=hours, ctx=ctx, now=now,
                                            weeks=4)
    user, patient = await people.register_patient(
        session, passwords=PASSWORDS, email=patient_email, password=PASSWORD, full_name=patient_name,
        birth_date=birth_date, phone=phone, locale="ru", ctx=ctx, now=now)
    return Seeded(physician, user, patient)
