"""The buttons on a consultation: admit, finish, cancel and reschedule, through the API's own services.

A refusal re-renders the page the form was posted from (the waiting room or the consultation) with a message
saying what to do; a change that went through is announced to the physician's open waiting-room pages.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import audit_context
from server.http.problems import NotFound, ProblemError
from server.scheduling import services
from server.scheduling.api import viewer_for
from server.scheduling.models import Consultation
from web.i18n import N_
from web.pages import PageAnswer, page_user, read_form
from web.staff_pages.common import STAFF, not_found, path_id
from web.staff_pages.consultation import consultation_response
from web.staff_pages.texts import problem_message
from web.staff_pages.waiting_room import queue_response


def _publish(request: web.Request, consultation: Consultation, event: str) -> None:
    """Tell the physician's open waiting-room pages, as the API does after the same change."""
    request.app[keys.waiting_room].publish(consultation.physician_id,
                                           {"event": event, "consultation_id": str(consultation.id)})


async def _change(request: web.Request, change: str, *, roles: tuple[Role, ...] = STAFF) -> str:
    """Run one of the scheduling services on the consultation in the path; where to go next.

    A refusal re-renders the page the form was on (the waiting room or the consultation) saying why.
    """
    principal = await page_user(request, roles=roles)
    consultation_id = await path_id(request, "consultation_id")
    form = await read_form(request, back=f"/clinic/consultations/{consultation_id}")
    viewer = await viewer_for(request, principal)
    from_queue = form.get("from") == "queue" and principal.role is Role.physician
    arguments: dict[str, Any] = {}
    if change == "reschedule":
        starts_at = _instant(form.get("starts_at", ""))
        if starts_at is None:
            raise PageAnswer(await consultation_response(request, error=N_("Choose the new time."), status=422))
        arguments["starts_at"] = starts_at
    if change in ("cancel", "reschedule"):
        arguments["windows"] = services.Windows.from_settings(request.app[keys.settings])
    if change == "admit":
        arguments["consent_policy"] = request.app[keys.consent].policy
    operation = getattr(services, change)
    try:
        async with tx(request) as db:
            consultation: Consultation = await operation(db, consultation_id=consultation_id, viewer=viewer,
                                                         ctx=audit_context(request), now=utcnow(), **arguments)
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        message = problem_message(problem)
        if from_queue:
            raise PageAnswer(await queue_response(request, error=message, status=problem.status)) from None
        raise PageAnswer(await consultation_response(request, error=message, status=problem.status)) from None
    _publish(request, consultation, change)
    if change == "finish":  # a call still open ends for everyone, as when the physician ends it in the call
        await request.app[keys.calls].finished(consultation.id)
    return "/clinic/waiting-room" if from_queue else f"/clinic/consultations/{consultation.id}"


def _instant(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


async def admit_submit(request: web.Request) -> web.Response:
    """The physician lets a waiting patient into the call."""
    raise web.HTTPSeeOther(await _change(request, "admit", roles=(Role.physician,)))


async def finish_submit(request: web.Request) -> web.Response:
    """The physician ends the call."""
    raise web.HTTPSeeOther(await _change(request, "finish", roles=(Role.physician,)))


async def cancel_submit(request: web.Request) -> web.Response:
    """The physician or an admin cancels the booking."""
    raise web.HTTPSeeOther(await _change(request, "cancel"))


async def reschedule_submit(request: web.Request) -> web.Response:
    """The physician or an admin moves the booking to another free slot."""
    raise web.HTTPSeeOther(await _change(request, "reschedule"))
