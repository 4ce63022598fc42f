"""Creating accounts and reading profiles."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role, User
from server.auth.passwords import Passwords
from server.http.problems import Conflict, FieldError, NotFound, ValidationFailed
from server.people import rules
from server.people.models import Patient, Physician, QaExpert


class EmailTaken(Conflict):
    code, title = "email_taken", "An account with this e-mail already exists"

    def __init__(self) -> None:
        super().__init__(errors=[FieldError(field="email", message="already registered", type="email_taken")])


async def _add_user(session: AsyncSession, user: User) -> None:
    exists = (await session.scalars(select(User.id).where(User.email == user.email))).first()
    if exists is not None:
        raise EmailTaken()
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise EmailTaken() from None


async def register_patient(session: AsyncSession, *, passwords: Passwords, email: str, password: str,
                           full_name: str, birth_date: dt.date, phone: str, locale: str, ctx: AuditContext,
                           now: dt.datetime, snils: str | None = None) -> tuple[User, Patient]:
    """A patient signs themself up; the account is usable at once."""
    user = User(email=email.lower(), password_hash=await passwords.hash(password), role=Role.patient,
                full_name=full_name, locale=locale, created_at=now)
    await _add_user(session, user)
    patient = Patient(user_id=user.id, birth_date=birth_date, phone=phone, snils=snils, created_at=now)
    session.add(patient)
    await session.flush()
    await audit.record(session, ctx=ctx.acting_as(user.id, Role.patient.value),
                       action="account.register", object_type="patient", object_id=patient.id,
                       subject_patient_id=patient.id, now=now)
    return user, patient


async def create_staff(session: AsyncSession, *, passwords: Passwords, role: Role, email: str, password: str,
                       full_name: str, locale: str = "ru", specialty: str | None = None,
                       licence_number: str | None = None, time_zone: str | None = None,
                       department: str | None = None, practises_as: uuid.UUID | None = None, ctx: AuditContext,
                       now: dt.datetime) -> User:
    """An admin (or the CLI) creates a physician, QA expert or admin account."""
    if role is Role.patient:
        raise ValueError("patients register themselves")
    user = User(email=email.lower(), password_hash=await passwords.hash(password), role=role, full_name=full_name,
                locale=locale, created_at=now)
    await _add_user(session, user)
    if role is Role.physician:
        if not (specialty and licence_number and time_zone):
            raise ValueError("a physician needs specialty, licence number and time zone")
        session.add(Physician(user_id=user.id, specialty=specialty, licence_number=licence_number,
                              time_zone=time_zone, department=department))
    elif role is Role.qa_expert:
        if practises_as is not None and await session.get(Physician, practises_as) is None:
            raise ValidationFailed("practises_as: no such physician", errors=[FieldError(
                field="practises_as", message="No physician with this id", type="not_found")])
        session.add(QaExpert(user_id=user.id, specialty=specialty, department=department,
                             physician_id=practises_as))
    await session.flush()
    await audit.record(session, ctx=ctx, action="account.create", object_type="user", object_id=user.id,
                       detail={"role": role.value}, now=now)
    return user


@dataclass(frozen=True)
class Profile:
    user: User
    patient: Patient | None
    physician: Physician | None
    qa_expert: QaExpert | None


async def profile(session: AsyncSession, *, user_id: uuid.UUID) -> Profile:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound()
    patient = (await session.scalars(select(Patient).where(Patient.user_id == user_id))).one_or_none()
    physician = (await session.scalars(select(Physician).where(Physician.user_id == user_id))).one_or_none()
    expert = (await session.scalars(select(QaExpert).where(QaExpert.user_id == user_id))).one_or_none()
    return Profile(user, patient, physician, expert)


async def read_patient(session: AsyncSession, *, viewer_role: Role, viewer_patient_id: uuid.UUID | None,
                       patient_id: uuid.UUID, ctx: AuditContext, now: dt.datetime) -> tuple[Patient, User]:
    """A patient's profile for someone allowed to see it; others get 404.

    Reads by anyone but the patient are audited (the patient's access log is about other people); the
    patient reading their own data is not.
    """
    if not rules.may_view_patient(viewer_role=viewer_role, viewer_patient_id=viewer_patient_id,
                                  patient_id=patient_id):
        raise NotFound()
    row = (await session.execute(select(Patient, User).join(User, User.id == Patient.user_id)
                                 .where(Patient.id == patient_id))).one_or_none()
    if row is None:
        raise NotFound()
    if viewer_patient_id != patient_id:
        await audit.record(session, ctx=ctx, action="patient.read", object_type="patient", object_id=patient_id,
                           subject_patient_id=patient_id, now=now)
    return row[0], row[1]


async def choose_channels(session: AsyncSession, *, patient_id: uuid.UUID, email: bool, sms: bool,
                          ctx: AuditContext, now: dt.datetime) -> Patient:
    """How the patient wants reminders: e-mail, SMS, both, or neither."""
    patient = await session.get(Patient, patient_id)
    if patient is None:
        raise NotFound()
    patient.notify_email, patient.notify_sms = email, sms
    await audit.record(session, ctx=ctx, action="patient.channels_chosen", object_type="patient",
                       object_id=patient_id, subject_patient_id=patient_id, detail={"email": email, "sms": sms},
                       now=now)
    return patient


async def list_users(session: AsyncSession, *, role: Role | None, limit: int, offset: int, ctx: AuditContext,
                     now: dt.datetime) -> list[User]:
    """Accounts for an admin; the listing names patients, so it is audited like any read of their data."""
    query = select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    if role is not None:
        query = query.where(User.role == role)
    users = list((await session.scalars(query)).all())
    await audit.record(session, ctx=ctx, action="users.list", object_type="user",
                       detail={"role": role.value if role else None, "count": len(users), "offset": offset},
                       now=now)
    return users


async def list_physicians(session: AsyncSession) -> list[tuple[Physician, User]]:
    rows = await session.execute(select(Physician, User).join(User, User.id == Physician.user_id)
                                 .where(User.is_active.is_(True)).order_by(func.lower(User.full_name)))
    return [(physician, user) for physician, user in rows.all()]
