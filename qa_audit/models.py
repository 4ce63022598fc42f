"""The QA audit's tables: one sampling decision per completed consultation, the versioned checklists, the reviews
experts write against them, and the record of QA secret rotations."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class SamplingDecision(Base):
    """Made exactly once per consultation (the unique constraint settles a race between two sampling runs), with
    what an inspector needs to recompute it: the draw value, the rule version and the secret's id."""

    __tablename__ = "qa_sampling_decisions"

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="RESTRICT"),
                                                       unique=True)
    physician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physicians.id", ondelete="RESTRICT"), index=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM of the start, in the clinic's zone
    sampled: Mapped[bool]
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    draw_value: Mapped[str] = mapped_column(String(16))  # 64-bit, hex: beyond a signed BIGINT
    policy_version: Mapped[int]
    secret_id: Mapped[str] = mapped_column(String(16))
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    topped_up_at: Mapped[dt.datetime | None] = mapped_column(default=None)  # sampled later to meet the floor


class ReviewStatus(StrEnum):
    """A review's way: the expert works on it (assigned, in review), submits it, the physician acknowledges or
    disputes; a disputed review is closed by a second review from another expert, which closes too."""

    assigned = "assigned"
    in_review = "in_review"
    submitted = "submitted"
    acknowledged = "acknowledged"
    disputed = "disputed"
    closed = "closed"


OPEN_STATUSES = (ReviewStatus.assigned, ReviewStatus.in_review)


class ChecklistTemplate(Base):
    """A versioned checklist: a review keeps the version it was filled against, so changing the checklist never
    changes a past score. Items are `{key, text: {en, ru}, weight, critical}`."""

    __tablename__ = "qa_checklist_templates"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[uuid_pk]
    code: Mapped[str] = mapped_column(String(40))
    version: Mapped[int]
    title: Mapped[dict[str, str]] = mapped_column(JSON)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Review(Base):
    """One expert's review of one sampled consultation. Round 2 is the second review a dispute asks for."""

    __tablename__ = "qa_reviews"
    __table_args__ = (UniqueConstraint("consultation_id", "round"),)

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="RESTRICT"),
                                                       index=True)
    physician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physicians.id", ondelete="RESTRICT"), index=True)
    expert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qa_experts.id", ondelete="RESTRICT"), index=True)
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qa_checklist_templates.id", ondelete="RESTRICT"))
    round: Mapped[int] = mapped_column(default=1)
    status: Mapped[ReviewStatus] = mapped_column(
        Enum(ReviewStatus, native_enum=False, length=16, validate_strings=True), index=True)
    assigned_at: Mapped[dt.datetime]
    due_on: Mapped[dt.date]
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), default=None)
    # The expert's work, saved as they go: {item_key: {answer: yes|no|na, comment, at}}, and notes pinned to
    # moments of the recording [{at, text}]. `revision` makes an autosave that lost a race fail, not overwrite.
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    score: Mapped[float | None] = mapped_column(default=None)  # weighted, 0-100, not-applicable items left out
    critical_failures: Mapped[int | None] = mapped_column(default=None)
    failed_items: Mapped[list[str]] = mapped_column(JSON, default=list)
    response: Mapped[str | None] = mapped_column(Text, default=None)  # the physician's, when they dispute
    responded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    reminded_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class SecretRotation(Base):
    """From `effective_from` on (by the consultation's start, in the clinic's zone) draws use the secret with
    `secret_id`; an inspector replaying a month needs to know which secret each day used."""

    __tablename__ = "qa_secret_rotations"

    id: Mapped[uuid_pk]
    secret_id: Mapped[str] = mapped_column(String(16), unique=True)
    effective_from: Mapped[dt.date]
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
