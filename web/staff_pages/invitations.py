"""The physician's buttons for a call's guests: invite an interpreter or a relative (the link is shown once, on
the page that answers the form) and revoke an invitation, through the same services as the API."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import audit_context
from server.http.problems import NotFound, ProblemError
from server.scheduling.api import viewer_for
from signaling import invitations
from web.i18n import N_
from web.pages import PageAnswer, page_user, read_form
from web.staff_pages.common import not_found, path_id
from web.staff_pages.consultation import consultation_response

# What the page says when an invitation cannot be made; anything else gets the generic message.
PROBLEM_MESSAGES = {
    "consultation_over": N_("The consultation is over or cancelled: nobody can be invited to it any more."),
    "too_many_invitations": N_("This consultation has as many invitations as allowed. Revoke one to invite "
                               "someone else."),
}
GENERIC_PROBLEM = N_("The invitation could not be made. Reload the page and try again.")


async def invite_submit(request: web.Request) -> web.Response:
    """The consultation's physician makes a one-time link; the page that answers shows it, this once."""
    principal = await page_user(request, roles=(Role.physician,))
    consultation_id = await path_id(request, "consultation_id")
    await read_form(request, back=f"/clinic/consultations/{consultation_id}")
    settings = request.app[keys.settings]
    try:
        async with tx(request) as db:
            token, _ = await invitations.invite(
                db, consultation_id=consultation_id, viewer=await viewer_for(request, principal),
                ctx=audit_context(request), now=utcnow(), overrun=dt.timedelta(minutes=settings.call_overrun_minutes))
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        message = PROBLEM_MESSAGES.get(problem.code, GENERIC_PROBLEM)
        raise PageAnswer(await consultation_response(request, error=message, status=problem.status)) from None
    return await consultation_response(request, new_link=invitations.guest_url(settings.public_url, token))


async def revoke_submit(request: web.Request) -> web.Response:
    """The physician withdraws an invitation: the link stops opening the call, and a guest in it is removed."""
    principal = await page_user(request, roles=(Role.physician,))
    consultation_id = await path_id(request, "consultation_id")
    invitation_id = await path_id(request, "invitation_id")
    await read_form(request, back=f"/clinic/consultations/{consultation_id}")
    try:
        async with tx(request) as db:
            await invitations.revoke(db, consultation_id=consultation_id, invitation_id=invitation_id,
                                     viewer=await viewer_for(request, principal), ctx=audit_context(request),
                                     now=utcnow())
    except NotFound:
        raise await not_found(request) from None
    await request.app[keys.calls].revoked(consultation_id, invitation_id)
    raise web.HTTPSeeOther(f"/clinic/consultations/{consultation_id}#invitations")
