"""A third participant: the physician invites an interpreter or a relative with a one-time link.

The link carries 256 random bits, shown once to the physician; only their SHA-256 is kept (as for join
tickets). The first browser to send the guest form with it redeems it (a conditional UPDATE, so of two at once
exactly one wins) and receives a fresh random pass, kept in an HttpOnly cookie, whose SHA-256 goes into the row:
from then on the link opens the call only together with that pass, so a link forwarded or read over a shoulder
after the guest has used it lets nobody else in. The guest has no account: their join tickets, seat and chat
messages name the invitation, which holds the name and relation they gave.

Services in the house style: a session first, the rest keyword-only, the time passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consent import services as consent
from consent.rules import GatePolicy
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role
from server.http.problems import NotFound
from server.scheduling import services as scheduling
from server.scheduling.models import Consultation, ConsultationStatus
from server.scheduling.services import Viewer
from signaling import rules, tickets
from signaling.models import CallInvitation, CallRole, GuestRelation
from signaling.problems import CannotInvite, CannotJoin, InvitationGone, MediaCapacity, TooManyInvitations
from signaling.services import Admission, JoinWindow

#: Invitations not revoked that a consultation may have at once: a call is for a few people, not an audience.
MAX_INVITATIONS = 3
#: While a consultation is in one of these it may still take place, so a guest may still be invited.
INVITABLE = frozenset({ConsultationStatus.scheduled, ConsultationStatus.waiting, ConsultationStatus.in_call,
                       ConsultationStatus.interrupted})
GUEST_PATH = "/call/guest/"

InvitationStatus = Literal["open", "redeemed", "revoked", "expired"]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def guest_url(public_url: str, token: str) -> str:
    """The link the physician hands over: the clinic's public address and the guest page."""
    return f"{public_url.rstrip('/')}{GUEST_PATH}{token}"


def status_of(invitation: CallInvitation, *, now: dt.datetime) -> InvitationStatus:
    """Revoked wins over everything; a redeemed link stays `redeemed` until the consultation's time is over."""
    if invitation.revoked_at is not None:
        return "revoked"
    if now >= invitation.expires_at:
        return "expired"
    return "redeemed" if invitation.redeemed_at is not None else "open"


def holds_pass(invitation: CallInvitation, guest_pass: str | None) -> bool:
    """Whether this browser's pass is the one issued when the link was redeemed (compared in constant time)."""
    if not guest_pass or invitation.pass_sha256 is None:
        return False
    return hmac.compare_digest(invitation.pass_sha256, digest(guest_pass))


async def _own_consultation(session: AsyncSession, consultation_id: uuid.UUID, viewer: Viewer, *,
                            for_change: bool = False) -> Consultation:
    """The consultation of this physician; anyone else (its patient too) gets 404, as if it did not exist."""
    consultation = await scheduling.load(session, consultation_id, viewer, for_change=for_change)
    if viewer.role is not Role.physician:
        raise NotFound()
    return consultation


def _audit_detail(invitation: CallInvitation) -> dict[str, str]:
    """What the audit log keeps of an invitation: never the guest's name (the log outlives the call)."""
    detail = {"invitation_id": str(invitation.id)}
    if invitation.guest_relation is not None:
        detail["relation"] = invitation.guest_relation.value
    return detail


async def invite(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, ctx: AuditContext,
                 now: dt.datetime, overrun: dt.timedelta,
                 limit: int = MAX_INVITATIONS) -> tuple[str, CallInvitation]:
    """A new one-time link (its token, shown once) for the consultation's physician, valid until the call must end.

    The consultation row is locked, so two invitations made at once cannot both take the last place.
    """
    consultation = await _own_consultation(session, consultation_id, viewer, for_change=True)
    expires_at = consultation.ends_at + overrun
    if consultation.status not in INVITABLE or now >= expires_at:
        raise CannotInvite("The consultation is over or cancelled")
    held = await session.scalar(select(func.count()).select_from(CallInvitation).where(
        CallInvitation.consultation_id == consultation.id, CallInvitation.revoked_at.is_(None),
        CallInvitation.expires_at > now))
    if (held or 0) >= limit:
        raise TooManyInvitations(f"At most {limit} invitations per consultation; revoke one to invite someone else")
    token = secrets.token_urlsafe(32)
    invitation = CallInvitation(consultation_id=consultation.id, token_sha256=digest(token),
                                created_by_user_id=viewer.user_id, created_at=now, expires_at=expires_at)
    session.add(invitation)
    await session.flush()
    await audit.record(session, ctx=ctx, action="call.invitation_created", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail=_audit_detail(invitation), now=now)
    return token, invitation


async def list_invitations(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer,
                           ctx: AuditContext, now: dt.datetime) -> list[CallInvitation]:
    """The consultation's invitations, oldest first, for its physician. Audited: the guests' names and relations
    belong to the patient's record."""
    consultation = await _own_consultation(session, consultation_id, viewer)
    await audit.record(session, ctx=ctx, action="call.invitations_listed", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id, now=now)
    return list((await session.scalars(select(CallInvitation).where(
        CallInvitation.consultation_id == consultation.id).order_by(CallInvitation.created_at,
                                                                    CallInvitation.id))).all())


async def revoke(session: AsyncSession, *, consultation_id: uuid.UUID, invitation_id: uuid.UUID, viewer: Viewer,
                 ctx: AuditContext, now: dt.datetime) -> CallInvitation:
    """The link stops working: no new form, no new join ticket (the caller then removes a guest already in the
    call: CallRegistry.revoked). Revoking twice changes nothing."""
    consultation = await _own_consultation(session, consultation_id, viewer)
    invitation = (await session.scalars(select(CallInvitation).where(
        CallInvitation.id == invitation_id, CallInvitation.consultation_id == consultation.id))).one_or_none()
    if invitation is None:
        raise NotFound()
    if invitation.revoked_at is None:
        invitation.revoked_at = now
        await session.flush()
        await audit.record(session, ctx=ctx, action="call.invitation_revoked", object_type="consultation",
                           object_id=consultation.id, subject_patient_id=consultation.patient_id,
                           detail=_audit_detail(invitation), now=now)
    return invitation


async def find(session: AsyncSession, *, token: str) -> CallInvitation | None:
    """The invitation a link's token names, whatever its state; None for a token nobody issued."""
    if not 20 <= len(token) <= 100:
        return None
    return (await session.scalars(select(CallInvitation).where(
        CallInvitation.token_sha256 == digest(token)))).one_or_none()


def guest_context(ctx: AuditContext) -> AuditContext:
    """The request, attributed to a guest: no account, so no user id; the role says who acted."""
    return AuditContext(None, CallRole.guest.value, ctx.request_id, ctx.ip_hash)


async def redeem(session: AsyncSession, *, token: str, name: str, relation: GuestRelation, ctx: AuditContext,
                 now: dt.datetime, recording_acknowledged: bool = False) -> str | None:
    """Claim the link for this browser: the guest's name and relation are kept and a new pass (returned, to be
    kept by the browser) is bound to it. None if the link is unknown, revoked, expired or already redeemed. The
    audit entry records whether the guest acknowledged that the consultation is recorded."""
    guest_pass = secrets.token_urlsafe(32)
    claimed = await session.execute(
        update(CallInvitation)
        .where(CallInvitation.token_sha256 == digest(token), CallInvitation.redeemed_at.is_(None),
               CallInvitation.revoked_at.is_(None), CallInvitation.expires_at > now)
        .values(redeemed_at=now, guest_name=name, guest_relation=relation, pass_sha256=digest(guest_pass)))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult for an UPDATE
        return None
    invitation = (await session.scalars(select(CallInvitation).where(
        CallInvitation.token_sha256 == digest(token)).execution_options(populate_existing=True))).one()
    patient_id = await session.scalar(select(Consultation.patient_id).where(
        Consultation.id == invitation.consultation_id))
    await audit.record(session, ctx=guest_context(ctx), action="call.invitation_redeemed",
                       object_type="consultation", object_id=invitation.consultation_id,
                       subject_patient_id=patient_id,
                       detail={**_audit_detail(invitation), "recording_acknowledged": recording_acknowledged}, now=now)
    return guest_pass


async def join_as_guest(session: AsyncSession, *, token: str, guest_pass: str | None, ctx: AuditContext,
                        now: dt.datetime, window: JoinWindow, consent_policy: GatePolicy,
                        has_room: Callable[[uuid.UUID], bool] = lambda _: True) -> tuple[Admission, CallInvitation]:
    """A single-use join ticket for the guest who redeemed the link in this browser, on the same terms as the
    patient's (admitted, within the window, the patient's consents holding) and the invitation still valid.
    404 without the right pass; 410 `invitation_gone` once revoked or expired."""
    invitation = await find(session, token=token)
    if invitation is None or not holds_pass(invitation, guest_pass):
        raise NotFound()
    if status_of(invitation, now=now) != "redeemed":
        raise InvitationGone("The physician revoked this invitation, or the consultation's time is over")
    consultation = (await session.scalars(select(Consultation).where(
        Consultation.id == invitation.consultation_id))).one()
    refusal = rules.join_refusal(role=CallRole.guest, status=consultation.status, starts_at=consultation.starts_at,
                                 ends_at=consultation.ends_at, now=now, opens_before=window.opens_before,
                                 overrun=window.overrun)
    if refusal is not None:
        raise CannotJoin(code=refusal, detail=refusal.replace("_", " "))
    gate = await consent.check_gate(session, consultation, policy=consent_policy, now=now)
    if not gate.may_start:  # the patient's missing consents are theirs to see, not the guest's
        raise CannotJoin(code="consent_required", detail="the patient's consent does not allow the call")
    if not has_room(consultation.id):
        raise MediaCapacity()
    ticket_token, ticket = await tickets.issue(session, consultation_id=consultation.id, user_id=None,
                                               invitation_id=invitation.id, role=CallRole.guest, now=now,
                                               ttl=window.ticket_ttl)
    await audit.record(session, ctx=guest_context(ctx), action="call.join_ticket", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail={"role": CallRole.guest.value, **_audit_detail(invitation)}, now=now)
    return Admission(ticket_token, ticket, gate.may_record), invitation
