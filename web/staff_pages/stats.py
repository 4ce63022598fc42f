"""A physician's figures for one day (consultations, no-shows, waiting), for them or for an admin."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.http.context import read
from server.scheduling import queries
from web.pages import render
from web.staff_pages.common import load_target, local_today, query_date


async def stats_page(request: web.Request) -> web.Response:
    """The figures of one day (`?day=`, by default today on the physician's clock)."""
    target = await load_target(request)
    day = query_date(request.query.get("day")) or local_today(target.zone)
    async with read(request) as db:
        figures = await queries.stats(db, physician_id=target.physician.id, day=day)
    wait = None if figures.mean_wait_seconds is None else figures.mean_wait_seconds / 60
    return await render(request, "staff/stats.html", {
        "target": target, "zone": target.zone, "time_zone": target.physician.time_zone, "day": day,
        "figures": figures, "mean_wait_minutes": wait, "previous": day - dt.timedelta(days=1),
        "next": day + dt.timedelta(days=1)})

