"""The patient's word on a finished consultation: a rating and, if they wish, a complaint. It feeds the QA audit's
targeted sampling rules (a complaint or a low rating puts the consultation in front of a quality expert)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class ConsultationFeedback(Base):
    """Given once per consultation (the unique constraint settles two sends racing), never edited: what the
    patient said is what the expert and the report read. The complaint text is PHI: it is stored, never logged."""

    __tablename__ = "consultation_feedback"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),)

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="RESTRICT"),
                                                       unique=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"), index=True)
    rating: Mapped[int]
    complaint: Mapped[str | None] = mapped_column(Text, default=None)  # None: no complaint made
    # Indexed: the sampling sweep reconciles recent feedback with decisions made about the same time.
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
