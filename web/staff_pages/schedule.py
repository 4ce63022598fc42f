"""The physician's day and week: their consultations, grouped by the day on their own wall clock."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.db.base import utcnow
from server.http.context import tx
from server.scheduling import queries
from server.scheduling.api import audit_listing
from web.pages import render
from web.staff_pages.common import SCHEDULE_LIMIT, load_desk, local_today, query_date


async def schedule_page(request: web.Request) -> web.Response:
    """One day (`?day=`, by default today) or a whole week (`?week=`), with links to step through them."""
    desk = await load_desk(request)
    today = local_today(desk.zone)
    week = query_date(request.query.get("week"))
    if week is not None:
        first, days = week - dt.timedelta(days=week.weekday()), 7
    else:
        first, days = query_date(request.query.get("day")) or today, 1
    last = first + dt.timedelta(days=days - 1)
    by_day: dict[dt.date, list[queries.ConsultationView]] = {first + dt.timedelta(days=i): [] for i in range(days)}
    async with tx(request) as db:  # UTC dates one wider than the local ones, then sorted by local date
        found = await queries.listing(db, viewer=desk.viewer, scope="all", now=utcnow(),
                                      date_from=first - dt.timedelta(days=1), date_to=last + dt.timedelta(days=1),
                                      limit=SCHEDULE_LIMIT)
        await audit_listing(db, request, found)  # the schedule names patients and their reasons
    for item in found:
        local_day = item.consultation.starts_at.astimezone(desk.zone).date()
        if local_day in by_day:
            by_day[local_day].append(item)
    step = dt.timedelta(days=days)
    return await render(request, "staff/schedule.html", {
        "zone": desk.zone, "time_zone": desk.physician.time_zone, "days": by_day, "week": week is not None,
        "first": first, "last": last, "today": today, "previous": first - step, "next": first + step})
