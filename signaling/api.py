"""REST side of the call: a join ticket for a participant, with the ICE servers to use; a guest's invitations."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.parsing import path_uuid
from server.http.principal import audit_context
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.scheduling.api import viewer_for
from server.settings import Settings
from signaling import handler, invitations, schemas, services
from signaling.models import CallInvitation

router = ApiRouter("call")


def websocket_url(public_url: str) -> str:
    base = public_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/v1/signaling"


@router.route("POST", "/api/v1/consultations/{consultation_id}/join", summary="A ticket to join the call",
              response=schemas.JoinOut, status=201, roles=[Role.patient, Role.physician], errors=(404, 409, 503))
async def join(request: web.Request) -> web.Response:
    """The physician from 15 minutes before the start; the patient once admitted; both until the slot's end plus
    the overrun. 409 `not_admitted`, `too_early`, `too_late`, `call_not_open`, or `consent_required`; 503
    `media_capacity` (with Retry-After) when this server hosts as many calls as TELEMED_MEDIA_MAX_CALLS allows
    and this call is not one of them."""
    viewer = await viewer_for(request)
    settings = request.app[keys.settings]
    consultation_id = path_uuid(request, "consultation_id")
    async with tx(request) as session:
        admission = await services.join(session, consultation_id=consultation_id,
                                        viewer=viewer, ctx=audit_context(request), now=utcnow(),
                                        window=services.JoinWindow.from_settings(settings),
                                        consent_policy=request.app[keys.consent].policy,
                                        has_room=request.app[keys.calls].has_room_for)
    return json_response(join_answer(settings, admission), status=201)


def join_answer(settings: Settings, admission: services.Admission) -> schemas.JoinOut:
    """What a participant needs to open the socket: the ticket, where, and the ICE servers (the guest page's join
    answers the same)."""
    ticket = admission.ticket
    servers = services.ice_servers_for(settings, str(ticket.id))
    return schemas.JoinOut(
        ticket=admission.token, expires_at=ticket.expires_at, ws_url=websocket_url(settings.public_url),
        ice_servers=[schemas.IceServerOut(**server.as_json()) for server in servers],
        consultation_id=ticket.consultation_id, role=ticket.role.value, recording=admission.may_record)


def _invitation_out(invitation: CallInvitation, now: dt.datetime) -> schemas.InvitationOut:
    return schemas.InvitationOut(
        id=invitation.id, status=invitations.status_of(invitation, now=now), created_at=invitation.created_at,
        expires_at=invitation.expires_at, redeemed_at=invitation.redeemed_at, revoked_at=invitation.revoked_at,
        guest_name=invitation.guest_name, guest_relation=invitation.guest_relation)


@router.route("POST", "/api/v1/consultations/{consultation_id}/invitations",
              summary="Invite a third participant (an interpreter or a relative) with a one-time link",
              response=schemas.InvitationCreated, status=201, roles=[Role.physician, Role.patient],
              errors=(404, 409))
async def create_invitation(request: web.Request) -> web.Response:
    """The consultation's physician only (anyone else: 404). The link is in this answer only; it works once, in
    the browser that opens it first, until the slot's end plus the overrun. 409 `consultation_over` once the
    consultation is over or cancelled, `too_many_invitations` beyond three not revoked."""
    viewer = await viewer_for(request)
    settings = request.app[keys.settings]
    async with tx(request) as session:
        token, invitation = await invitations.invite(
            session, consultation_id=path_uuid(request, "consultation_id"), viewer=viewer,
            ctx=audit_context(request), now=utcnow(), overrun=dt.timedelta(minutes=settings.call_overrun_minutes))
    url = invitations.guest_url(settings.public_url, token)
    return json_response(schemas.InvitationCreated(id=invitation.id, url=url, expires_at=invitation.expires_at),
                         status=201)


@router.route("GET", "/api/v1/consultations/{consultation_id}/invitations", summary="The call's invitations",
              response=schemas.InvitationList, roles=[Role.physician, Role.patient], errors=(404,))
async def list_invitations(request: web.Request) -> web.Response:
    """The consultation's physician only: each invitation's state and, once redeemed, the name and relation the
    guest gave; never the link. Audited, as the names are part of the patient's record."""
    viewer = await viewer_for(request)
    now = utcnow()
    async with tx(request) as session:
        found = await invitations.list_invitations(
            session, consultation_id=path_uuid(request, "consultation_id"), viewer=viewer, ctx=audit_context(request),
            now=now)
    return json_response(schemas.InvitationList(items=[_invitation_out(item, now) for item in found]))


@router.route("POST", "/api/v1/consultations/{consultation_id}/invitations/{invitation_id}/revoke",
              summary="Revoke an invitation", response=schemas.InvitationOut,
              roles=[Role.physician, Role.patient], errors=(404,))
async def revoke_invitation(request: web.Request) -> web.Response:
    """The link stops opening the call and gets no new join ticket, and a guest in the call is removed from it
    (`error` `invitation_gone`, close 4403; the others see `participant_left`). Revoking again changes nothing."""
    viewer = await viewer_for(request)
    now = utcnow()
    async with tx(request) as session:
        invitation = await invitations.revoke(
            session, consultation_id=path_uuid(request, "consultation_id"),
            invitation_id=path_uuid(request, "invitation_id"), viewer=viewer, ctx=audit_context(request), now=now)
    await request.app[keys.calls].revoked(invitation.consultation_id, invitation.id)
    return json_response(_invitation_out(invitation, now))


@router.route("GET", handler.PATH, summary="The call's WebSocket (signaling)", status=101, public=True,
              errors=(400, 403))
async def signaling(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket; the first message is `join` with the ticket from `POST .../join`, then SDP, ICE,
    media state, chat, leave or end, as docs/signaling.md describes. 403 `origin_not_allowed` unless the page's
    `Origin` is one of TELEMED_ALLOWED_ORIGINS (by default that of TELEMED_PUBLIC_URL)."""
    return await handler.websocket(request)
