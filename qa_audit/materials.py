"""Everything the review screen shows about the audited consultation, loaded in one place and audited once.

The expert judges the call against the checklist from what the record holds: the recordings, the physician's
signed protocol, what the patient answered before and at check-in, whether the consents held at the call, the
call's chat, why the consultation was sampled and what the patient said of it afterwards. Only a reader who may
see the review may load them (`reviews.get`: 404 otherwise), and each loading is an access-log entry for the
patient, as opening their record is.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import rules as consent_rules
from consent import templates as consent_templates
from consent.models import Consent, ConsentPurpose
from media.recording.models import FINAL_STATES, Recording, RecordingOutput
from qa_audit import feedback, reviews
from qa_audit.feedback_models import ConsultationFeedback
from qa_audit.models import Review, SamplingDecision
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import User
from server.people.models import Physician
from server.records.content import ProtocolContent, loaded
from server.records.models import ProtocolDocument, ProtocolVersion
from server.records.timeline import ChatLine, chat_of
from server.scheduling import queries
from server.scheduling.models import ConditionVersion, Consultation, Questionnaire
from server.scheduling.queries import ConsultationView

PARTICIPANT_ORDER = {"physician": 0, "patient": 1, "guest": 2}  # the physician leads the synced player


@dataclass(frozen=True)
class RecordingMaterial:
    """A finalised recording (complete, partial or damaged: a damaged one is itself a finding) and its
    participants' playable files, physician first."""

    recording: Recording
    outputs: list[RecordingOutput]


@dataclass(frozen=True)
class SignedProtocol:
    """The protocol as last signed: what the physician stands by, with how many versions came before."""

    version: int
    signed_at: dt.datetime
    level: str
    amendment_reason: str | None
    content: ProtocolContent


@dataclass(frozen=True)
class Screening:
    """A questionnaire's definition (to show questions, not ids) and the patient's answers to it."""

    definition: dict[str, Any] | None
    answers: dict[str, Any] | None


@dataclass(frozen=True)
class ConsentAtCall:
    """The consent gate as it stood when the call began: the consents signed by then (a withdrawal after the
    call does not make it unconsented) judged against the versions published by then."""

    at: dt.datetime
    decision: consent_rules.GateDecision
    consents: list[Consent]

    def held(self, purpose: ConsentPurpose) -> bool:
        return any(s.purpose is purpose and s.problem is None for s in self.decision.statuses)


@dataclass(frozen=True)
class Materials:
    review: Review
    view: ConsultationView
    recordings: list[RecordingMaterial]
    protocol: SignedProtocol | None
    screening: Screening
    checkin: Screening
    consent: ConsentAtCall
    chat: list[ChatLine]
    reasons: list[str]  # why it was sampled: the draw, the floor, or the targeted rules that fired
    feedback: ConsultationFeedback | None  # the patient's rating and complaint, often the very reason


async def load(session: AsyncSession, reader: reviews.Reader, review_id: uuid.UUID, *,
               policy: consent_rules.GatePolicy, ctx: AuditContext, now: dt.datetime) -> Materials:
    """The review's consultation as the review screen shows it; 404 for a reader who may not see the review."""
    review = await reviews.get(session, reader, review_id)
    view = await queries.view(session, review.consultation_id)
    consultation = view.consultation
    materials = Materials(
        review=review, view=view, recordings=await recordings(session, consultation.id),
        protocol=await signed_protocol(session, consultation.id),
        screening=Screening(await _definition(session, consultation.questionnaire_id),
                            consultation.screening_answers),
        checkin=Screening(await _definition(session, consultation.checkin_questionnaire_id),
                          consultation.checkin_answers),
        consent=await consent_at(session, patient_id=consultation.patient_id,
                                 at=consultation.admitted_at or consultation.starts_at, policy=policy),
        chat=await chat_of(session, consultation.id),
        reasons=list(await session.scalar(select(SamplingDecision.reasons).where(
            SamplingDecision.consultation_id == consultation.id)) or []),
        feedback=await feedback.feedback_for(session, consultation.id))
    await audit.record(session, ctx=ctx, action="qa.materials_viewed", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail={"review_id": str(review.id),
                               "recordings": [str(item.recording.id) for item in materials.recordings],
                               "protocol_version": materials.protocol.version if materials.protocol else None,
                               "feedback": materials.feedback is not None},
                       now=now)
    return materials


async def recordings(session: AsyncSession, consultation_id: uuid.UUID) -> list[RecordingMaterial]:
    """The consultation's playable recordings, oldest first (a call resumed after a failure has several)."""
    found = (await session.scalars(select(Recording).where(
        Recording.consultation_id == consultation_id, Recording.state.in_(FINAL_STATES))
        .order_by(Recording.started_at))).all()
    result = []
    for recording in found:
        outputs = (await session.scalars(select(RecordingOutput).where(
            RecordingOutput.recording_id == recording.id))).all()
        result.append(RecordingMaterial(recording, sorted(outputs, key=lambda o: PARTICIPANT_ORDER.get(
            o.participant, len(PARTICIPANT_ORDER)))))
    return result


async def signed_protocol(session: AsyncSession, consultation_id: uuid.UUID) -> SignedProtocol | None:
    """The latest signed version's content (a draft is the physician's unfinished work, not the record)."""
    row = (await session.execute(
        select(ProtocolVersion, ProtocolDocument.content)
        .join(ProtocolDocument, ProtocolDocument.id == ProtocolVersion.document_id)
        .where(ProtocolVersion.consultation_id == consultation_id)
        .order_by(ProtocolVersion.version.desc()).limit(1))).one_or_none()
    if row is None:
        return None
    version, content = row
    return SignedProtocol(version.version, version.signed_at, version.level.value, version.amendment_reason,
                          loaded(content))


async def _definition(session: AsyncSession, questionnaire_id: uuid.UUID | None) -> dict[str, Any] | None:
    if questionnaire_id is None:
        return None
    return await session.scalar(select(Questionnaire.definition).where(Questionnaire.id == questionnaire_id))


async def consent_at(session: AsyncSession, *, patient_id: uuid.UUID, at: dt.datetime,
                     policy: consent_rules.GatePolicy) -> ConsentAtCall:
    """The gate's decision at `at`, from what existed at `at`: judging a past call by today's texts would call
    a consent outdated that was current when the patient spoke to the physician."""
    signed = list((await session.scalars(select(Consent).where(
        Consent.patient_id == patient_id, Consent.signed_at <= at).order_by(Consent.signed_at.desc()))).all())
    facts = [consent_rules.ConsentFacts(c.purpose, c.template_version, c.level, c.signed_at,
                                        c.withdrawn_at if c.withdrawn_at is not None and c.withdrawn_at <= at
                                        else None) for c in signed]
    decision = consent_rules.decide(facts, minimum_versions=await consent_templates.minimum_versions(session, as_of=at),
                                    policy=policy, now=at)
    return ConsentAtCall(at, decision, signed)


@dataclass(frozen=True)
class Headline:
    """What a queue row says about the consultation: when, whose, about what; never the patient's name."""

    starts_at: dt.datetime
    physician_name: str
    kind: str
    condition: ConditionVersion


async def headlines(session: AsyncSession, consultation_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Headline]:
    """Headlines for the reviews a list shows (the caller has filtered them through `reviews.visible`)."""
    wanted = set(consultation_ids)
    if not wanted:
        return {}
    rows = (await session.execute(
        select(Consultation.id, Consultation.starts_at, User.full_name, Consultation.kind, ConditionVersion)
        .join(Physician, Physician.id == Consultation.physician_id).join(User, User.id == Physician.user_id)
        .join(ConditionVersion, ConditionVersion.id == Consultation.condition_id)
        .where(Consultation.id.in_(wanted)))).all()
    return {row[0]: Headline(row[1], row[2], row[3].value, row[4]) for row in rows}
