"""REST side of the call: a join ticket for a participant, with the ICE servers to use."""

from __future__ import annotations

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
from signaling import handler, schemas, services

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
    ticket = admission.ticket
    servers = services.ice_servers_for(settings, str(ticket.id))
    return json_response(schemas.JoinOut(
        ticket=admission.token, expires_at=ticket.expires_at, ws_url=websocket_url(settings.public_url),
        ice_servers=[schemas.IceServerOut(**server.as_json()) for server in servers],
        consultation_id=ticket.consultation_id, role=ticket.role.value, recording=admission.may_record), status=201)


@router.route("GET", handler.PATH, summary="The call's WebSocket (signaling)", status=101, public=True,
              errors=(400, 403))
async def signaling(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket; the first message is `join` with the ticket from `POST .../join`, then SDP, ICE,
    media state, chat, leave or end, as docs/signaling.md describes. 403 `origin_not_allowed` unless the page's
    `Origin` is one of TELEMED_ALLOWED_ORIGINS (by default that of TELEMED_PUBLIC_URL)."""
    return await handler.websocket(request)
