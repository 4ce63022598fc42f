"""What every staff page starts from: who it is for, the ids and dates it was asked for, the not-found page.

Access follows the API's rule (`page_user`, `viewer_for`); anything a page cannot show (a bad id, another
physician's record) gets the same 404 page, so staff pages do not tell what exists.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiohttp import web

from server import keys
from server.auth.models import Role, User
from server.db.base import utcnow
from server.http.context import read
from server.http.principal import Principal
from server.http.problems import NotFound
from server.people.models import Physician
from server.scheduling import availability, services
from server.scheduling.api import viewer_for
from web.pages import PageAnswer, page_user, render

STAFF = (Role.physician, Role.admin)
SCHEDULE_LIMIT = 1000  # a week of round-the-clock 10-minute slots fits


async def not_found(request: web.Request) -> PageAnswer:
    """The 404 page, raised by a helper when what the page is about is not there (or not this user's)."""
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": "/"}, status=404))


async def path_id(request: web.Request, name: str) -> uuid.UUID:
    """The id in the path; one that is not a UUID names nothing, so it gets the 404 page."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise await not_found(request) from None


@dataclass(frozen=True)
class Desk:
    """A physician at work: who is signed in, as scheduling sees them, and their own record."""

    principal: Principal
    viewer: services.Viewer
    physician: Physician

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.physician.time_zone)


async def load_desk(request: web.Request) -> Desk:
    """The signed-in physician (anyone else: login, second factor or a 404 page, as `page_user` decides)."""
    principal = await page_user(request, roles=[Role.physician])
    viewer = await viewer_for(request, principal)
    if viewer.physician_id is None:
        raise await not_found(request)
    async with read(request) as db:
        physician = await db.get(Physician, viewer.physician_id)
    if physician is None:
        raise await not_found(request)
    return Desk(principal, viewer, physician)


@dataclass(frozen=True)
class Target:
    """The physician whose hours or figures a page shows: one's own, or any for an admin."""

    principal: Principal
    physician: Physician
    account: User
    base: str  # where this physician's pages live: /clinic or /clinic/physicians/{id}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.physician.time_zone)

    @property
    def own(self) -> bool:
        return self.principal.role is Role.physician


async def load_target(request: web.Request) -> Target:
    """The physician in the path for an admin, else the signed-in physician themselves."""
    if "physician_id" in request.match_info:
        principal = await page_user(request, roles=[Role.admin])
        physician_id = await path_id(request, "physician_id")
        base = f"/clinic/physicians/{physician_id}"
    else:
        principal = await page_user(request, roles=[Role.physician])
        found = (await viewer_for(request, principal)).physician_id
        if found is None:
            raise await not_found(request)
        physician_id, base = found, "/clinic"
    try:
        async with read(request) as db:
            physician, account = await availability.physician(db, physician_id)
    except NotFound:
        raise await not_found(request) from None
    return Target(principal, physician, account, base)


def local_today(zone: ZoneInfo) -> dt.date:
    """Today on the physician's wall clock, which is the day their pages open on."""
    return utcnow().astimezone(zone).date()


def query_date(text: str | None) -> dt.date | None:
    """A date from the query, or None (then the page shows today); far-off years are refused too."""
    try:
        found = dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None
    return found if found is not None and 2000 <= found.year <= 2999 else None


def booking_weeks(request: web.Request) -> int:
    """How far ahead patients may book, so hours changes and rescheduling look as far as booking does."""
    return request.app[keys.settings].booking_weeks_ahead
