"""The invited guest's pages: an interpreter or a relative opens the physician's one-time link, says who they
are, and joins the call, without an account.

`/call/guest/{token}` shows the form while the link is unused; sending it redeems the link for this browser
(`signaling.invitations.redeem`: once, whoever is first) and leaves a pass in an HttpOnly cookie, limited to
these pages; the same address then opens the call page, in this browser only. Anyone else opening a used link
is told so and gets nothing more. The call page's join request is `POST /call/guest/{token}/join`, answered like
the API's `POST .../join` (JSON, problems as RFC 9457 documents).
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from pydantic import ValidationError

from server import keys
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.middlewares import is_secure
from server.http.parsing import field_errors
from server.http.principal import audit_context, check_csrf
from server.http.responses import json_response
from server.scheduling import queries
from server.scheduling.models import Consultation
from signaling import invitations, services
from signaling.api import join_answer
from signaling.models import CallInvitation, GuestRelation
from signaling.schemas import GuestIn
from web import i18n
from web.call_pages import render_call
from web.pages import PageAnswer, page_handler, read_form, render

GUEST_COOKIE = "telemed_guest"

N_ = i18n.N_
RELATIONS = {
    GuestRelation.interpreter: N_("Interpreter"),
    GuestRelation.family: N_("Family member"),
    GuestRelation.caregiver: N_("Caregiver"),
    GuestRelation.other: N_("Other"),
}
# Why a link does not open the form or the call, and the status that says it: unknown (404), or gone (410).
_UNAVAILABLE = {"unknown": 404, "revoked": 410, "over": 410, "used": 410}


async def _unavailable(request: web.Request, kind: str) -> PageAnswer:
    return PageAnswer(await render(request, "guest/unavailable.html", {"kind": kind}, status=_UNAVAILABLE[kind]))


async def _load(request: web.Request) -> tuple[str, CallInvitation, Consultation, str]:
    """The link's invitation, its consultation and the physician's name, or the page saying why not."""
    token = request.match_info["token"]
    async with read(request) as db:
        invitation = await invitations.find(db, token=token)
        if invitation is None:
            raise await _unavailable(request, "unknown")
        view = await queries.view(db, invitation.consultation_id)
    state = invitations.status_of(invitation, now=utcnow())
    if state == "revoked":
        raise await _unavailable(request, "revoked")
    if state == "expired" or view.consultation.status not in invitations.INVITABLE:
        raise await _unavailable(request, "over")
    return token, invitation, view.consultation, view.physician_name


async def _form(request: web.Request, *, physician: str, values: dict[str, str], errors: dict[str, str],
                status: int = 200) -> web.Response:
    return await render(request, "guest/invitation.html", {
        "physician": physician, "values": values, "errors": errors, "relations": RELATIONS,
        "recorded": request.app[keys.consent].policy.recording_enabled, "action": request.path}, status=status)


async def guest_page(request: web.Request) -> web.Response:
    """The form while the link is unused; the call for the browser that redeemed it; for anyone else, used."""
    _, invitation, consultation, physician = await _load(request)
    if invitation.redeemed_at is None:
        return await _form(request, physician=physician, values={}, errors={})
    if not invitations.holds_pass(invitation, request.cookies.get(GUEST_COOKIE)):
        raise await _unavailable(request, "used")
    return await render_call(request, consultation=consultation, role="guest", other_name=physician,
                             back=request.path, join_url=f"{request.path}/join", account_locale=None)


async def guest_submit(request: web.Request) -> web.Response:
    """Redeem the link with the guest's name and relation (and, where the clinic records, their acknowledgement);
    back to the same address, which now opens the call in this browser."""
    form = await read_form(request)
    token, invitation, _, physician = await _load(request)
    if invitation.redeemed_at is not None:
        if invitations.holds_pass(invitation, request.cookies.get(GUEST_COOKIE)):
            raise web.HTTPSeeOther(request.path)  # sent twice from the same browser: it is in already
        raise await _unavailable(request, "used")
    values = {"name": form.get("name", ""), "relation": form.get("relation", "")}
    errors: dict[str, str] = {}
    guest: GuestIn | None = None
    try:
        guest = GuestIn.model_validate(values)
    except ValidationError as exc:
        errors = {error.field: error.type for error in field_errors(exc)}
    if request.app[keys.consent].policy.recording_enabled and form.get("recorded") != "on":
        errors["recorded"] = "missing"
    if guest is None or errors:
        return await _form(request, physician=physician, values=values, errors=errors, status=422)
    now = utcnow()
    async with tx(request) as db:
        guest_pass = await invitations.redeem(db, token=token, name=guest.name, relation=guest.relation,
                                              ctx=audit_context(request), now=now,
                                              recording_acknowledged=form.get("recorded") == "on")
    if guest_pass is None:  # another browser was quicker, or the link was revoked meanwhile
        raise await _unavailable(request, "used")
    response = web.HTTPSeeOther(request.path)
    # Scoped to this link (its join URL lies below it): a guest invited to two consultations keeps both passes.
    # Lax, not Strict: the guest reopens the link from webmail or a messenger, a cross-site navigation; the join
    # request is a same-origin POST with the CSRF header anyway.
    response.set_cookie(GUEST_COOKIE, guest_pass, max_age=_seconds_until(invitation.expires_at, now),
                        path=request.path, httponly=True, samesite="Lax", secure=is_secure(request))
    raise response


def _seconds_until(moment: dt.datetime, now: dt.datetime) -> int:
    return max(1, int((moment - now).total_seconds()))


async def guest_join(request: web.Request) -> web.Response:
    """The call page's join request for the guest: a ticket, as `POST /api/v1/consultations/{id}/join` gives.
    Needs this browser's pass (else 404) and the page's CSRF header; 410 `invitation_gone` once revoked or over;
    409 and 503 as for the patient."""
    check_csrf(request)
    settings = request.app[keys.settings]
    async with tx(request) as db:
        admission, _ = await invitations.join_as_guest(
            db, token=request.match_info["token"], guest_pass=request.cookies.get(GUEST_COOKIE),
            ctx=audit_context(request), now=utcnow(), window=services.JoinWindow.from_settings(settings),
            consent_policy=request.app[keys.consent].policy, has_room=request.app[keys.calls].has_room_for)
    return json_response(join_answer(settings, admission), status=201)


def setup(app: web.Application) -> None:
    """Registers the guest's pages: the link, its form, and the call page's join request."""
    app.router.add_get("/call/guest/{token}", page_handler(guest_page), name="guest_call")
    app.router.add_post("/call/guest/{token}", page_handler(guest_submit))
    app.router.add_post("/call/guest/{token}/join", guest_join)
