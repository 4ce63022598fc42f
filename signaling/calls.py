"""The live call's database side: taking a seat with a ticket, the chat, and the consultation's status.

Services in the house style: a session first, the rest keyword-only, the time passed in.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from dataclasses import dataclass

import nh3
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import services as consent
from consent.rules import GatePolicy
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role, User
from server.scheduling import services as scheduling
from server.scheduling.models import Consultation, ConsultationStatus
from server.scheduling.services import Viewer
from signaling import rules, tickets
from signaling.models import CallChatMessage, CallInvitation, CallRole
from signaling.services import JoinWindow

# WebSocket close codes of the call (docs/signaling.md). 1000, 1001, 1008, 1009 are RFC 6455's.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013  # the node hosts as many calls as it may (TELEMED_MEDIA_MAX_CALLS)
CLOSE_TICKET = 4401  # the ticket was refused: ask `POST .../join` for a new one
CLOSE_NOT_OPEN = 4403  # the call cannot be joined now (over, not admitted, consent withdrawn)
CLOSE_REPLACED = 4409  # the same participant connected again elsewhere
CLOSE_MEDIA_FAILED = 4410  # the media connection failed: rejoin with a new ticket


class Refused(Exception):
    """This socket may not take part in the call; `code` for the error event, `close_code` for the close."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


@dataclass(frozen=True)
class Seat:
    """What a redeemed ticket lets in: one participant of one consultation's call.

    `user_id` identifies the participant in the room: the account's id, or for an invited guest (who has no
    account) the invitation's id, which `invitation_id` then repeats.
    """

    consultation_id: uuid.UUID
    patient_id: uuid.UUID
    physician_id: uuid.UUID
    user_id: uuid.UUID
    role: CallRole
    name: str
    may_record: bool
    invitation_id: uuid.UUID | None = None


async def take_seat(session: AsyncSession, *, token: str, consultation_id: uuid.UUID, ctx: AuditContext,
                    now: dt.datetime, window: JoinWindow, consent_policy: GatePolicy) -> Seat:
    """Redeem the ticket (once) and check again what `POST .../join` checked: the call may have ended, or the
    patient withdrawn a consent, in the ticket's few seconds. Refused otherwise."""
    ticket = await tickets.redeem(session, token, consultation_id=consultation_id, now=now)
    if ticket is None:
        raise Refused("invalid_ticket", "the ticket is unknown, expired, used or for another call", CLOSE_TICKET)
    invitation = None
    if ticket.invitation_id is not None:  # an invited guest: the link must still be valid when they take the seat
        invitation = await session.get(CallInvitation, ticket.invitation_id)
        if invitation is None or invitation.revoked_at is not None or invitation.guest_name is None:
            raise Refused("invitation_gone", "the invitation was revoked", CLOSE_NOT_OPEN)
    consultation = (await session.scalars(select(Consultation).where(Consultation.id == consultation_id))).one()
    refusal = rules.join_refusal(role=ticket.role, status=consultation.status, starts_at=consultation.starts_at,
                                 ends_at=consultation.ends_at, now=now, opens_before=window.opens_before,
                                 overrun=window.overrun)
    if refusal is not None:
        raise Refused(refusal, refusal.replace("_", " "), CLOSE_NOT_OPEN)
    gate = await consent.check_gate(session, consultation, policy=consent_policy, now=now)
    if not gate.may_start:
        raise Refused("consent_required", "the patient's consent does not allow the call", CLOSE_NOT_OPEN)
    if invitation is not None:
        return await _guest_seat(session, invitation=invitation, consultation=consultation, ctx=ctx, now=now,
                                 may_record=gate.may_record)
    assert ticket.user_id is not None  # noqa: S101  # the CHECK constraint: no invitation, so an account
    name = (await session.scalars(select(User.full_name).where(User.id == ticket.user_id))).one()
    await audit.record(session, ctx=ctx.acting_as(ticket.user_id, ticket.role.value), action="call.joined",
                       object_type="consultation", object_id=consultation.id,
                       subject_patient_id=consultation.patient_id, detail={"role": ticket.role.value}, now=now)
    return Seat(consultation.id, consultation.patient_id, consultation.physician_id, ticket.user_id, ticket.role,
                name, gate.may_record)


async def _guest_seat(session: AsyncSession, *, invitation: CallInvitation, consultation: Consultation,
                      ctx: AuditContext, now: dt.datetime, may_record: bool) -> Seat:
    """An invited guest's seat: the invitation stands for the account they do not have. The audit log keeps the
    relation they gave, not their name (the invitation holds it, with the consultation)."""
    relation = invitation.guest_relation.value if invitation.guest_relation else None
    await audit.record(session, ctx=AuditContext(None, CallRole.guest.value, ctx.request_id, ctx.ip_hash),
                       action="call.joined", object_type="consultation", object_id=consultation.id,
                       subject_patient_id=consultation.patient_id,
                       detail={"role": CallRole.guest.value, "relation": relation,
                               "invitation_id": str(invitation.id)}, now=now)
    return Seat(consultation.id, consultation.patient_id, consultation.physician_id, invitation.id, CallRole.guest,
                invitation.guest_name or "", may_record, invitation_id=invitation.id)


async def record_refused(session: AsyncSession, *, seat: Seat, code: str, ctx: AuditContext,
                         now: dt.datetime) -> None:
    """The ticket was good (`call.joined` is written when it is redeemed) but the room turned the seat away
    (`call_full`, `media_capacity`, `media_failed`): the log says so, so that it never shows a join that was not."""
    actor = None if seat.invitation_id is not None else seat.user_id  # a guest has no account
    await audit.record(session, ctx=AuditContext(actor, seat.role.value, ctx.request_id, ctx.ip_hash),
                       action="call.join_refused", object_type="consultation", object_id=seat.consultation_id,
                       subject_patient_id=seat.patient_id, detail={"role": seat.role.value, "code": code}, now=now)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_chat(text: str) -> str:
    """Plain text without markup: nh3 removes every tag (and a script's or style's content), entities are
    turned back into the characters they stand for, control characters and outer whitespace go."""
    return _CONTROL.sub("", html.unescape(nh3.clean(text, tags=set()))).strip()


async def save_chat(session: AsyncSession, *, seat: Seat, text: str, now: dt.datetime) -> CallChatMessage:
    """Keep a (cleaned) chat message with the consultation."""
    guest = seat.invitation_id is not None  # a guest's seat carries the invitation's id as its user id
    message = CallChatMessage(consultation_id=seat.consultation_id, sender_user_id=None if guest else seat.user_id,
                              sender_invitation_id=seat.invitation_id, sender_role=seat.role, text=text,
                              sent_at=now)
    session.add(message)
    await session.flush()
    return message


async def chat_history(session: AsyncSession, *, consultation_id: uuid.UUID) -> list[CallChatMessage]:
    """The call's chat, oldest first (what the record will show)."""
    return list((await session.scalars(select(CallChatMessage).where(
        CallChatMessage.consultation_id == consultation_id).order_by(CallChatMessage.sent_at))).all())


async def end(session: AsyncSession, *, seat: Seat, ctx: AuditContext, now: dt.datetime) -> Consultation:
    """The physician ends the consultation from the call: `completed`, as the REST `finish` does."""
    viewer = Viewer(seat.user_id, Role.physician, physician_id=seat.physician_id)
    return await scheduling.finish(session, consultation_id=seat.consultation_id, viewer=viewer,
                                   ctx=ctx.acting_as(seat.user_id, seat.role.value), now=now)


async def resume(session: AsyncSession, *, consultation_id: uuid.UUID, now: dt.datetime) -> bool:
    """Physician and patient are both connected: an interrupted consultation is `in_call` again."""
    moved = await scheduling.set_call_state(session, consultation_id=consultation_id,
                                            target=ConsultationStatus.in_call, now=now)
    return moved is not None


async def interrupt(session: AsyncSession, *, consultation_id: uuid.UUID, now: dt.datetime) -> bool:
    """Everyone dropped and nobody returned within the grace period: `interrupted` (it may resume)."""
    moved = await scheduling.set_call_state(session, consultation_id=consultation_id,
                                            target=ConsultationStatus.interrupted, now=now)
    return moved is not None
