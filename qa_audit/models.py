"""The QA audit's tables: one sampling decision per completed consultation (issue 7; assignments, checklists and
reviews follow)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, ForeignKey, String
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
