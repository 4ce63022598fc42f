"""The patient's medical record as a timeline of encounters (consultations), newest first.

Each encounter brings together what the record is made of: the screening and check-in answers, the physician's
signed protocol (every version), the call's chat, and its recordings with their state and who has played them.
No access check and no audit entry here: the page deciding who reads records the read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from media.recording.models import Recording, RecordingOutput
from server.audit.models import AuditEntry
from server.auth.models import User
from server.records.services import SignedVersion, signed_versions
from server.scheduling import queries
from server.scheduling.queries import ConsultationView
from signaling.models import CallChatMessage, CallInvitation


@dataclass(frozen=True)
class ChatLine:
    sent_at: dt.datetime
    role: str
    name: str
    text: str


@dataclass(frozen=True)
class Access:
    at: dt.datetime
    role: str | None
    name: str | None
    action: str


@dataclass
class RecordingEntry:
    recording: Recording
    outputs: list[RecordingOutput]
    accesses: list[Access] = field(default_factory=list)


@dataclass
class Encounter:
    view: ConsultationView
    protocol: list[SignedVersion]
    chat: list[ChatLine]
    recordings: list[RecordingEntry]


async def chat_of(session: AsyncSession, consultation_id: uuid.UUID) -> list[ChatLine]:
    """The call's chat in order, each line with its sender's name (a guest by the name they gave)."""
    rows = (await session.execute(
        select(CallChatMessage, User.full_name, CallInvitation.guest_name)
        .outerjoin(User, User.id == CallChatMessage.sender_user_id)
        .outerjoin(CallInvitation, CallInvitation.id == CallChatMessage.sender_invitation_id)
        .where(CallChatMessage.consultation_id == consultation_id).order_by(CallChatMessage.sent_at))).all()
    return [ChatLine(message.sent_at, message.sender_role.value, user_name or guest_name or "", message.text)
            for message, user_name, guest_name in rows]


async def recordings_of(session: AsyncSession, consultation_id: uuid.UUID) -> list[RecordingEntry]:
    recordings = (await session.scalars(select(Recording).where(Recording.consultation_id == consultation_id)
                                        .order_by(Recording.started_at))).all()
    entries = []
    for recording in recordings:
        outputs = (await session.scalars(select(RecordingOutput).where(RecordingOutput.recording_id == recording.id)
                                         .order_by(RecordingOutput.participant))).all()
        accesses = (await session.execute(
            select(AuditEntry.at, AuditEntry.actor_role, User.full_name, AuditEntry.action)
            .outerjoin(User, User.id == AuditEntry.actor_user_id)
            .where(AuditEntry.object_type == "recording", AuditEntry.object_id == str(recording.id),
                   AuditEntry.action.in_(["recording.played", "recording.erased", "recording.legal_hold_set",
                                          "recording.legal_hold_released"]))
            .order_by(AuditEntry.seq))).all()
        entries.append(RecordingEntry(recording, list(outputs), [Access(*row) for row in accesses]))
    return entries


async def patient_record(session: AsyncSession, patient_id: uuid.UUID) -> list[Encounter]:
    encounters = []
    for view in await queries.patient_history(session, patient_id):
        consultation_id = view.consultation.id
        encounters.append(Encounter(view, await signed_versions(session, consultation_id=consultation_id),
                                    await chat_of(session, consultation_id), await recordings_of(session,
                                                                                                 consultation_id)))
    return encounters
