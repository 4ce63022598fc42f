"""Reading and changing physicians' schedules."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.scheduling.models import WeeklyAvailability


async def weekly_availability(session: AsyncSession, *, physician_id: uuid.UUID) -> list[WeeklyAvailability]:
    """A physician's recurring hours, Monday first, in their own time zone."""
    rows = await session.scalars(
        select(WeeklyAvailability).where(WeeklyAvailability.physician_id == physician_id)
        .order_by(WeeklyAvailability.weekday, WeeklyAvailability.start_time)
    )
    return list(rows.all())
