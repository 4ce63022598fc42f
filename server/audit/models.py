"""Audit entries and the chain head that serialises appends."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base


class AuditEntry(Base):
    """One event. `hash` covers every other field and `prev_hash`, so edits, deletions and
    reordering break the chain where they happened."""

    __tablename__ = "audit_entries"
    # A patient's access log; what happened to one object (the QA facts of a consultation); one action over a
    # period (the QA sweeps of recent refusals).
    __table_args__ = (Index("ix_audit_entries_subject_patient_id_seq", "subject_patient_id", "seq"),
                      Index("ix_audit_entries_object_type_object_id", "object_type", "object_id"),
                      Index("ix_audit_entries_action_at", "action", "at"))

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    at: Mapped[dt.datetime]
    actor_user_id: Mapped[uuid.UUID | None]
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    subject_patient_id: Mapped[uuid.UUID | None]  # whose health data it touched, for their access log
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)  # codes only, never PHI
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """A single row holding the chain's tip. Updating it first takes a write lock (a row lock on
    PostgreSQL, the database lock on SQLite), so concurrent appends queue instead of forking."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
