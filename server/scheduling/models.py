"""Schedules, the conditions catalogue, screening questionnaires, consultations and their notifications."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


def _enum(kind: type[StrEnum], length: int = 16) -> Enum:
    return Enum(kind, native_enum=False, length=length, validate_strings=True)


class WeeklyAvailability(Base):
    """One time range on one weekday, in the physician's own time zone (local wall-clock times, so
    a daylight-saving change keeps the hours the physician meant)."""

    __tablename__ = "weekly_availability"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("start_time < end_time", name="start_before_end"),
        CheckConstraint("slot_minutes BETWEEN 5 AND 120", name="slot_minutes_range"),
    )

    id: Mapped[uuid_pk]
    physician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physicians.id", ondelete="CASCADE"),
                                                    index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)  # 0 = Monday
    start_time: Mapped[dt.time]
    end_time: Mapped[dt.time]
    slot_minutes: Mapped[int] = mapped_column(SmallInteger, default=20)


class ExceptionKind(StrEnum):
    day_off = "day_off"
    extra_hours = "extra_hours"


class AvailabilityException(Base):
    """A day off, or extra hours on one date (physician-local), on top of the weekly pattern."""

    __tablename__ = "availability_exceptions"
    __table_args__ = (
        CheckConstraint("kind = 'day_off' OR (start_time IS NOT NULL AND end_time IS NOT NULL "
                        "AND start_time < end_time)", name="extra_hours_have_a_range"),
    )

    id: Mapped[uuid_pk]
    physician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physicians.id", ondelete="CASCADE"),
                                                    index=True)
    day: Mapped[dt.date]
    kind: Mapped[ExceptionKind] = mapped_column(_enum(ExceptionKind))
    start_time: Mapped[dt.time | None] = mapped_column(default=None)
    end_time: Mapped[dt.time | None] = mapped_column(default=None)
    slot_minutes: Mapped[int] = mapped_column(SmallInteger, default=20)


class ConditionVersion(Base):
    """One version of a catalogue entry. Editing adds a version; consultations keep the one they used."""

    __tablename__ = "conditions"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[uuid_pk]
    code: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int]
    is_current: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)  # withdrawn from booking, never deleted
    icd10: Mapped[str | None] = mapped_column(String(16))
    name_ru: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    audience: Mapped[str] = mapped_column(String(8), default="any")
    allows_primary: Mapped[bool]
    allows_repeat: Mapped[bool]
    questionnaire_code: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)

    def name(self, locale: str) -> str:
        return self.name_ru if locale == "ru" else self.name_en


class Questionnaire(Base):
    """One published version of a screening questionnaire; `definition` is a QuestionnaireDefinition."""

    __tablename__ = "questionnaires"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[uuid_pk]
    code: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int]
    is_current: Mapped[bool] = mapped_column(default=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DiagnosisSource(StrEnum):
    in_person = "in_person"
    consultation = "consultation"


class PatientDiagnosis(Base):
    """A diagnosis made at this clinic: what allows repeat teleconsultations for that condition."""

    __tablename__ = "patient_diagnoses"
    __table_args__ = (Index("ix_patient_diagnoses_patient_id_condition_code", "patient_id", "condition_code"),)

    id: Mapped[uuid_pk]
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    condition_code: Mapped[str] = mapped_column(String(64))
    source: Mapped[DiagnosisSource] = mapped_column(_enum(DiagnosisSource))
    diagnosed_on: Mapped[dt.date]
    recorded_by_user_id: Mapped[uuid.UUID]
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ConsultationKind(StrEnum):
    primary = "primary"
    repeat = "repeat"


class ConsultationStatus(StrEnum):
    scheduled = "scheduled"
    waiting = "waiting"
    in_call = "in_call"
    completed = "completed"
    documented = "documented"
    cancelled = "cancelled"
    no_show = "no_show"
    refused = "refused"
    interrupted = "interrupted"


# Statuses that keep the slot taken. A cancelled or refused booking frees it for someone else.
RELEASED_STATUSES = ("cancelled", "refused")
_HOLDS_SLOT = text("status NOT IN ('cancelled', 'refused')")


class Consultation(Base):
    __tablename__ = "consultations"
    __table_args__ = (
        # Double booking is impossible by construction: one live consultation per physician and start.
        Index("uq_consultations_physician_id_starts_at", "physician_id", "starts_at", unique=True,
              sqlite_where=_HOLDS_SLOT, postgresql_where=_HOLDS_SLOT),
        Index("ix_consultations_patient_id_starts_at", "patient_id", "starts_at"),
        Index("ix_consultations_status_starts_at", "status", "starts_at"),
        CheckConstraint("starts_at < ends_at", name="starts_before_ends"),
    )

    id: Mapped[uuid_pk]
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    physician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physicians.id", ondelete="RESTRICT"))
    condition_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conditions.id", ondelete="RESTRICT"))
    kind: Mapped[ConsultationKind] = mapped_column(_enum(ConsultationKind))
    status: Mapped[ConsultationStatus] = mapped_column(_enum(ConsultationStatus),
                                                      default=ConsultationStatus.scheduled)
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    complaint: Mapped[str] = mapped_column(Text, default="")
    questionnaire_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("questionnaires.id", ondelete="RESTRICT"))
    screening_answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    booked_by_user_id: Mapped[uuid.UUID]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sequence: Mapped[int] = mapped_column(default=0)  # bumps on every change; the calendar invitation's SEQUENCE
    checked_in_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    checkin_questionnaire_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("questionnaires.id", ondelete="RESTRICT"), default=None)
    checkin_answers: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    device_check: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    admitted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    cancelled_by_user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    needs_reschedule: Mapped[bool] = mapped_column(default=False)  # the physician's hours no longer cover it


class ScreeningStage(StrEnum):
    booking = "booking"
    checkin = "checkin"


class ScreeningEvent(Base):
    """A screening that stopped a booking or check-in: the clinic reviews every one."""

    __tablename__ = "screening_events"

    id: Mapped[uuid_pk]
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"), index=True)
    physician_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("physicians.id", ondelete="RESTRICT"))
    consultation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("consultations.id", ondelete="RESTRICT"))
    questionnaire_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("questionnaires.id", ondelete="RESTRICT"))
    stage: Mapped[ScreeningStage] = mapped_column(_enum(ScreeningStage))
    rule_ids: Mapped[list[str]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(16))  # the most serious: red_flag or in_person
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NotificationStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"


class Notification(Base):
    """One message to send. The idempotency key is unique, so a retried task cannot queue it twice,
    and a claim (pending -> sending) means two workers cannot both send it."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_created_at", "status", "created_at"),)

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"),
                                                       index=True)
    kind: Mapped[str] = mapped_column(String(24))  # booked, changed, cancelled, reminder_24h, ...
    channel: Mapped[str] = mapped_column(String(8))  # email or sms
    sequence: Mapped[int] = mapped_column(default=0)  # the booking version it describes (calendar SEQUENCE)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    status: Mapped[NotificationStatus] = mapped_column(_enum(NotificationStatus),
                                                       default=NotificationStatus.pending)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)  # an error class, never content
