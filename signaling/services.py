"""Joining a consultation's call: who, when, with which consents; the ticket and the ICE servers to use."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from consent import services as consent
from consent.problems import ConsentRequired
from consent.rules import GatePolicy
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role
from server.http.problems import NotFound
from server.scheduling import services as scheduling
from server.scheduling.services import Viewer
from server.settings import Settings
from signaling import rules, tickets, turn
from signaling.models import CallRole, JoinTicket
from signaling.problems import CannotJoin, MediaCapacity


@dataclass(frozen=True)
class JoinWindow:
    opens_before: dt.timedelta
    overrun: dt.timedelta
    ticket_ttl: dt.timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> JoinWindow:
        return cls(dt.timedelta(minutes=settings.join_opens_minutes),
                   dt.timedelta(minutes=settings.call_overrun_minutes),
                   dt.timedelta(seconds=settings.join_ticket_seconds))


@dataclass(frozen=True)
class Admission:
    token: str
    ticket: JoinTicket
    may_record: bool


async def join(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, ctx: AuditContext,
               now: dt.datetime, window: JoinWindow, consent_policy: GatePolicy,
               has_room: Callable[[uuid.UUID], bool] = lambda _: True) -> Admission:
    """A single-use ticket for the consultation's own patient or physician, if the call may be joined now and
    the node has a place for it (`has_room`, admission control: checked last, so only someone who may join
    learns the server is busy)."""
    consultation = await scheduling.load(session, consultation_id, viewer)
    roles = {Role.patient: CallRole.patient, Role.physician: CallRole.physician}
    role = roles.get(viewer.role)
    if role is None:
        raise NotFound()
    refusal = rules.join_refusal(role=role, status=consultation.status, starts_at=consultation.starts_at,
                                 ends_at=consultation.ends_at, now=now, opens_before=window.opens_before,
                                 overrun=window.overrun)
    if refusal is not None:
        raise CannotJoin(code=refusal, detail=refusal.replace("_", " "))
    gate = await consent.check_gate(session, consultation, policy=consent_policy, now=now)
    if not gate.may_start:
        raise ConsentRequired([p for p in consent.gate_problems(gate) if p["required"]])
    if not has_room(consultation.id):
        raise MediaCapacity()
    token, ticket = await tickets.issue(session, consultation_id=consultation.id, user_id=viewer.user_id, role=role,
                                       now=now, ttl=window.ticket_ttl)
    await audit.record(session, ctx=ctx, action="call.join_ticket", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail={"role": role.value}, now=now)
    return Admission(token, ticket, gate.may_record)


def ice_servers_for(settings: Settings, participant: str) -> list[turn.IceServer]:
    secret = settings.turn_secret.get_secret_value().encode() if settings.turn_secret else None
    return turn.ice_servers(stun_urls=settings.stun_urls, turn_urls=settings.turn_urls, secret=secret,
                            participant=participant, now=int(time.time()),
                            lifetime=settings.turn_credential_ttl_seconds)
