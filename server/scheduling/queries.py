"""Reading consultations: lists, detail, the waiting-room queue, and a clinic day's figures."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.auth.models import Role, User
from server.http.problems import NotFound
from server.people.models import Patient, Physician
from server.scheduling.models import ConditionVersion, Consultation, ConsultationStatus, Questionnaire
from server.scheduling.services import Viewer

PatientUser = aliased(User)
PhysicianUser = aliased(User)


@dataclass(frozen=True)
class ConsultationView:
    consultation: Consultation
    patient_name: str
    physician_name: str
    condition: ConditionVersion
    questionnaire_code: str


def _joined() -> Any:  # a Select of five columns; typed rows would only add noise here
    return (select(Consultation, PatientUser.full_name, PhysicianUser.full_name, ConditionVersion,
                   Questionnaire.code)
            .join(Patient, Patient.id == Consultation.patient_id)
            .join(PatientUser, PatientUser.id == Patient.user_id)
            .join(Physician, Physician.id == Consultation.physician_id)
            .join(PhysicianUser, PhysicianUser.id == Physician.user_id)
            .join(ConditionVersion, ConditionVersion.id == Consultation.condition_id)
            .join(Questionnaire, Questionnaire.id == Consultation.questionnaire_id))


def _view(row: Any) -> ConsultationView:
    consultation, patient_name, physician_name, condition, questionnaire_code = row
    return ConsultationView(consultation, patient_name, physician_name, condition, questionnaire_code)


def _views(rows: Sequence[Any]) -> list[ConsultationView]:
    return [_view(row) for row in rows]


async def view(session: AsyncSession, consultation_id: uuid.UUID) -> ConsultationView:
    return _view((await session.execute(_joined().where(Consultation.id == consultation_id))).one())


async def patient_history(session: AsyncSession, patient_id: uuid.UUID) -> list[ConsultationView]:
    """A patient's consultations that took place or were due (not cancelled ones), newest first: their record."""
    return _views((await session.execute(_joined().where(
        Consultation.patient_id == patient_id, Consultation.status != ConsultationStatus.cancelled)
        .order_by(Consultation.starts_at.desc()))).all())


async def listing(session: AsyncSession, *, viewer: Viewer, scope: str, now: dt.datetime,
                  date_from: dt.date | None = None, date_to: dt.date | None = None,
                  limit: int = 100) -> list[ConsultationView]:
    """The viewer's own consultations: a patient's, or a physician's; an admin's view is every one."""
    query = _joined()
    if viewer.role is Role.patient:
        query = query.where(Consultation.patient_id == viewer.patient_id)
    elif viewer.role is Role.physician:
        query = query.where(Consultation.physician_id == viewer.physician_id)
    elif viewer.role is not Role.admin:
        return []
    live = [ConsultationStatus.scheduled, ConsultationStatus.waiting, ConsultationStatus.in_call,
            ConsultationStatus.interrupted]
    if scope == "upcoming":
        query = query.where(Consultation.status.in_(live), Consultation.ends_at >= now).order_by(Consultation.starts_at)
    elif scope == "past":
        query = query.where(Consultation.status.not_in([*live, ConsultationStatus.cancelled])) \
            .order_by(Consultation.starts_at.desc())
    elif scope == "cancelled":
        query = query.where(Consultation.status == ConsultationStatus.cancelled).order_by(Consultation.starts_at.desc())
    else:
        query = query.order_by(Consultation.starts_at)
    if date_from is not None:
        query = query.where(Consultation.starts_at >= dt.datetime.combine(date_from, dt.time(), dt.UTC))
    if date_to is not None:
        query = query.where(Consultation.starts_at < dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(),
                                                                         dt.UTC))
    return _views((await session.execute(query.limit(limit))).all())


async def waiting_room(session: AsyncSession, *, physician_id: uuid.UUID) -> list[ConsultationView]:
    """Who is waiting for this physician, in order of arrival."""
    rows = await session.execute(_joined().where(Consultation.physician_id == physician_id,
                                                 Consultation.status == ConsultationStatus.waiting)
                                 .order_by(Consultation.checked_in_at))
    return _views(rows.all())


@dataclass(frozen=True)
class DayStats:
    booked: int
    completed: int
    cancelled: int
    no_show: int
    no_show_rate: float | None
    mean_wait_seconds: float | None


def day_stats(consultations: list[Consultation]) -> DayStats:
    """Figures for one physician's day (pure). Completed counts documented ones too."""
    by_status: dict[ConsultationStatus, int] = {}
    for consultation in consultations:
        by_status[consultation.status] = by_status.get(consultation.status, 0) + 1
    completed = by_status.get(ConsultationStatus.completed, 0) + by_status.get(ConsultationStatus.documented, 0)
    no_show = by_status.get(ConsultationStatus.no_show, 0)
    cancelled = by_status.get(ConsultationStatus.cancelled, 0)
    due = len(consultations) - cancelled - by_status.get(ConsultationStatus.scheduled, 0)
    waits = [(c.admitted_at - c.checked_in_at).total_seconds() for c in consultations
             if c.admitted_at is not None and c.checked_in_at is not None]
    return DayStats(booked=len(consultations) - cancelled, completed=completed, cancelled=cancelled, no_show=no_show,
                    no_show_rate=(no_show / due) if due else None, mean_wait_seconds=mean(waits) if waits else None)


async def stats(session: AsyncSession, *, physician_id: uuid.UUID, day: dt.date) -> DayStats:
    """One clinic day in the physician's own time zone."""
    doctor = await session.get(Physician, physician_id)
    if doctor is None:
        raise NotFound()
    zone = ZoneInfo(doctor.time_zone)
    start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    rows = await session.scalars(select(Consultation).where(
        Consultation.physician_id == physician_id, Consultation.starts_at >= start, Consultation.starts_at < end))
    return day_stats(list(rows.all()))
