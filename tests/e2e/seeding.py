"""The clinic a browser test starts from, written straight into the live server's database: the catalogue, a
physician working round the clock (so a slot is always near) and a patient."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.services import AuditContext
from server.auth.models import Role, User
from server.auth.passwords import Passwords
from server.db.base import utcnow
from server.db.engine import create_engine, create_sessionmaker, transaction
from server.people import services as people
from server.people.models import Patient, Physician
from server.scheduling import availability, conditions, rules, services
from server.scheduling.catalogue import load_conditions, load_questionnaires
from server.scheduling.models import Consultation, ConsultationKind
from tests.consent_helpers import offline_setup, sign_in_session
from tests.factories import PASSWORD
from tests.scheduling_helpers import benign_answers

DOCTOR_EMAIL = "doctor@clinic.example"
PATIENT_EMAIL = "nina@example.org"
DEVICE = {"camera": True, "microphone": True, "speaker": True, "browser": "Chromium"}
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


async def admitted_consultation(database_url: str, data_dir: Path, *, patient_email: str = PATIENT_EMAIL,
                                admitted: bool = True) -> str:
    """A patient with signed consents, booked into the next slot, checked in and (unless told not to) let in by
    the physician."""
    engine = create_engine(database_url, null_pool=True)
    ctx, now = AuditContext(actor_role="test"), utcnow()
    questionnaires = load_questionnaires()
    windows = services.Windows(checkin_opens=dt.timedelta(minutes=60))
    setup = offline_setup(data_dir)
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            seeded = await seed_clinic(session, patient_email=patient_email, patient_name="Нина Павловна Звонарёва",
                                       birth_date=dt.date(1950, 1, 15), phone="+79160003344", ctx=ctx, now=now)
            physician, user, patient = seeded.physician, seeded.user, seeded.patient
            await sign_in_session(session, patient_id=patient.id, user_id=user.id, setup=setup)
            (slot,) = await availability.free_slots(session, now=now, weeks=4, physician_id=physician.id, limit=1)
            as_patient = services.Viewer(user.id, Role.patient, patient_id=patient.id)
            booked = await services.book(session, patient_id=patient.id, physician_id=physician.id,
                                         starts_at=slot.starts_at, condition_code="arvi",
                                         kind=ConsultationKind.primary,
                                         answers=benign_answers(questionnaires["respiratory"]),
                                         complaint="Кашель", now=now, windows=windows,
                                         ctx=AuditContext(actor_user_id=user.id, actor_role="patient"))
            assert isinstance(booked, Consultation)
            checked = await services.check_in(session, consultation_id=booked.id, viewer=as_patient,
                                              answers=benign_answers(questionnaires["checkin"]), device_check=DEVICE,
                                              ctx=ctx, now=now, windows=windows, consent_policy=setup.policy)
            assert isinstance(checked, Consultation)
            as_physician = services.Viewer(physician.user_id, Role.physician, physician_id=physician.id)
            if not admitted:
                return str(booked.id)
            await services.admit(session, consultation_id=booked.id, viewer=as_physician, ctx=ctx, now=now,
                                 consent_policy=setup.policy)
            return str(booked.id)
    finally:
        await engine.dispose()
