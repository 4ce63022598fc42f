"""Sampling completed consultations for the QA audit: the facts gathered, the decision made once, the floor met.

The decisions themselves are qa_audit.sampling's (pure). Here: what a consultation's facts are, storing exactly
one decision per consultation even when two sampling runs race, and topping up a physician-month to its floor.
"""

from __future__ import annotations

import datetime as dt
import uuid
from fractions import Fraction
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from media.recording.models import Recording
from qa_audit import sampling
from qa_audit.models import SamplingDecision
from server.audit import services as audit
from server.audit.models import AuditEntry
from server.keyring import QaSecret
from server.scheduling.models import Consultation, ConsultationStatus
from server.settings import Settings

DONE = (ConsultationStatus.completed, ConsultationStatus.documented)
#: The worst recording state wins: a consultation with a damaged recording is sampled for it.
_RECORDING_ORDER = {"damaged": 0, "partial": 1, "complete": 2}


def policy_from(settings: Settings) -> sampling.SamplingPolicy:
    return sampling.SamplingPolicy(rate=Fraction(str(settings.qa_sampling_rate)),
                                   min_call_seconds=settings.qa_min_call_seconds,
                                   first_consultations=settings.qa_first_consultations)


def month_of(consultation: Consultation, zone: ZoneInfo) -> str:
    return consultation.starts_at.astimezone(zone).strftime("%Y-%m")


async def facts_for(session: AsyncSession, consultation: Consultation, *, zone: ZoneInfo) -> sampling.Facts:
    """What the targeted rules read, from the record: the call's length, interruptions, the recording's state,
    refused primary-consultation fields, and how many consultations the physician has completed before."""
    actions = set((await session.scalars(select(AuditEntry.action).where(
        AuditEntry.object_type == "consultation", AuditEntry.object_id == str(consultation.id)))).all())
    states = (await session.scalars(select(Recording.state).where(
        Recording.consultation_id == consultation.id))).all()
    worst = min((state.value for state in states if state.value in _RECORDING_ORDER),
                key=lambda value: _RECORDING_ORDER[value], default=None)
    earlier = await session.scalar(select(func.count()).select_from(Consultation).where(
        Consultation.physician_id == consultation.physician_id, Consultation.status.in_(DONE),
        Consultation.starts_at < consultation.starts_at)) or 0
    seconds = None
    if consultation.admitted_at is not None and consultation.ended_at is not None:
        seconds = (consultation.ended_at - consultation.admitted_at).total_seconds()
    return sampling.Facts(
        consultation_id=consultation.id, physician_id=consultation.physician_id,
        month=month_of(consultation, zone), call_seconds=seconds,
        interrupted="consultation.interrupted" in actions, recording_state=worst,
        forbidden_fields_refused="protocol.forbidden_field_refused" in actions,
        physician_consultation_number=earlier + 1)


async def decide_once(session: AsyncSession, consultation: Consultation, *, secret: QaSecret,
                      policy: sampling.SamplingPolicy, zone: ZoneInfo, now: dt.datetime) -> SamplingDecision:
    """The consultation's one decision: made now, or the one another run made first."""
    existing = await _decision(session, consultation.id)
    if existing is not None:
        return existing
    decision = sampling.decide(await facts_for(session, consultation, zone=zone), secret=secret.key, policy=policy)
    row = SamplingDecision(consultation_id=consultation.id, physician_id=consultation.physician_id,
                           month=month_of(consultation, zone), sampled=decision.sampled,
                           reasons=[reason.value for reason in decision.reasons],
                           draw_value=f"{decision.value:016x}", policy_version=decision.policy_version,
                           secret_id=secret.key_id, decided_at=now)
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another run decided it between our look and our insert: theirs stands
        found = await _decision(session, consultation.id)
        if found is None:
            raise
        return found
    await audit.record(session, ctx=audit.SYSTEM, action="qa.sampling_decided", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail={"sampled": decision.sampled, "reasons": row.reasons}, now=now)
    return row


async def _decision(session: AsyncSession, consultation_id: uuid.UUID) -> SamplingDecision | None:
    return (await session.scalars(select(SamplingDecision).where(
        SamplingDecision.consultation_id == consultation_id))).one_or_none()


async def sample_pending(session: AsyncSession, *, secret: QaSecret, policy: sampling.SamplingPolicy,
                         zone: ZoneInfo, now: dt.datetime, limit: int = 500) -> int:
    """Decide every completed consultation that has no decision yet (oldest first); how many were decided."""
    waiting = (await session.scalars(
        select(Consultation).outerjoin(SamplingDecision, SamplingDecision.consultation_id == Consultation.id)
        .where(Consultation.status.in_(DONE), SamplingDecision.id.is_(None))
        .order_by(Consultation.starts_at).limit(limit))).all()
    for consultation in waiting:
        await decide_once(session, consultation, secret=secret, policy=policy, zone=zone, now=now)
    return len(waiting)


async def top_up_month(session: AsyncSession, *, month: str, policy: sampling.SamplingPolicy,
                       now: dt.datetime) -> list[uuid.UUID]:
    """Bring every physician's `month` to its floor, lowest draw values first; the consultations added."""
    rows = (await session.scalars(select(SamplingDecision).where(SamplingDecision.month == month)
                                  .with_for_update())).all()
    groups: dict[uuid.UUID, list[SamplingDecision]] = {}
    for row in rows:
        groups.setdefault(row.physician_id, []).append(row)
    added: list[uuid.UUID] = []
    for group in groups.values():
        candidates = [sampling.Candidate(row.consultation_id, int(row.draw_value, 16), row.sampled) for row in group]
        chosen = set(sampling.top_up(candidates, policy.rate))
        for row in group:
            if row.consultation_id in chosen:
                row.sampled, row.topped_up_at = True, now
                row.reasons = [*row.reasons, sampling.Reason.floor.value]
                added.append(row.consultation_id)
                await audit.record(session, ctx=audit.SYSTEM, action="qa.sampling_topped_up",
                                   object_type="consultation", object_id=row.consultation_id, now=now)
    return added
