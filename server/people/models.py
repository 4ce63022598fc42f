"""What the clinic knows about each kind of person, beyond their account."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, String, false, true
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[uuid_pk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    birth_date: Mapped[dt.date]
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    # СНИЛС, 11 digits: how a qualified e-signature certificate names its holder (enhanced consent).
    snils: Mapped[str | None] = mapped_column(String(11), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The patient chooses how to be reminded; e-mail on by default, SMS on request.
    notify_email: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_sms: Mapped[bool] = mapped_column(default=False, server_default=false())


class Physician(Base):
    __tablename__ = "physicians"

    id: Mapped[uuid_pk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    specialty: Mapped[str] = mapped_column(String(100))
    licence_number: Mapped[str] = mapped_column(String(50))
    time_zone: Mapped[str] = mapped_column(String(64))  # IANA name, e.g. Europe/Moscow
    department: Mapped[str | None] = mapped_column(String(100), default=None)  # QA may keep reviews out of it


class QaExpert(Base):
    __tablename__ = "qa_experts"

    id: Mapped[uuid_pk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), unique=True)
    specialty: Mapped[str | None] = mapped_column(String(100), default=None)
    department: Mapped[str | None] = mapped_column(String(100), default=None)
    # The expert's own practice, when they also see patients: their consultations are never theirs to review.
    physician_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("physicians.id", ondelete="SET NULL"),
                                                           default=None)
