"""Weekly availability: the recurring hours a physician offers for teleconsultations."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, SmallInteger
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, uuid_pk


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
