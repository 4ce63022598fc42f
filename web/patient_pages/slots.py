"""Free slots a page at a time, under their days, for booking and for rescheduling alike.

A page ends with a "later times" link that carries the last slot shown (`after`), so paging needs no state and
a page of times can be bookmarked.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server import keys
from server.db.base import utcnow
from server.scheduling import availability
from server.scheduling.availability import FreeSlot
from web.patient_pages.formatting import zone_info

SLOTS_PER_PAGE = 30


def by_day(slots: Iterable[FreeSlot]) -> list[tuple[dt.date, list[FreeSlot]]]:
    """Slots under their date on the physician's wall clock, in time order."""
    days: dict[dt.date, list[FreeSlot]] = {}
    for slot in slots:
        days.setdefault(slot.starts_at.astimezone(zone_info(slot.time_zone)).date(), []).append(slot)
    return list(days.items())


async def free_slot_page(session: AsyncSession, request: web.Request, *, physician_id: uuid.UUID | None = None,
                         specialty: str | None = None, date_from: dt.date | None = None,
                         date_to: dt.date | None = None,
                         after: dt.datetime | None = None) -> tuple[list[FreeSlot], bool]:
    """One page of free slots (those after `after`, for "later times") and whether more follow."""
    settings = request.app[keys.settings]
    if after is not None:  # the search takes physicians' local dates: a day early covers every zone; see below
        earliest = (after - dt.timedelta(days=1)).date()
        date_from = max(date_from, earliest) if date_from else earliest
    found = await availability.free_slots(session, now=utcnow(), weeks=settings.booking_weeks_ahead,
                                          physician_id=physician_id, specialty=specialty, date_from=date_from,
                                          date_to=date_to, limit=100_000 if after else SLOTS_PER_PAGE + 1)
    if after is not None:
        found = [slot for slot in found if slot.starts_at > after]
    return found[:SLOTS_PER_PAGE], len(found) > SLOTS_PER_PAGE
