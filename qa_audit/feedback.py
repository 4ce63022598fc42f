"""Patients' feedback on their finished consultations, and how it reaches the QA audit's sampling.

A complaint or a low rating is a targeted sampling rule (`sampling.Reason.complaint`, `Reason.low_rating`). The
rule reads the feedback through `feedback_facts` when the consultation's one decision is made; feedback that
arrives after the decision changes that decision instead (`apply_feedback`, in the same transaction as the
feedback itself): an unsampled consultation becomes sampled, a sampled one gains the reason. Either way the
change is audited, so an inspector replaying the draw sees why a decision differs from its first form (the late
path itself is qa_audit.late_reasons.add_reasons, shared with refused protocol fields).

The complaint text is PHI: it is stored and shown to the patient and the clinic's reviewers, never logged and
never put in an audit entry (those carry the rating and whether a complaint was made).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import late_reasons, sampling
from qa_audit.feedback_models import ConsultationFeedback
from qa_audit.models import SamplingDecision
from server.audit import services as audit
from server.http.problems import Conflict, NotFound
from server.scheduling import services as scheduling
from server.scheduling.models import ConsultationStatus

# Not qa_audit.services' DONE: that module reads `feedback_facts`, so this one must not import it.
FINISHED = frozenset({ConsultationStatus.completed, ConsultationStatus.documented})
#: The targeted rules patients' feedback feeds.
FEEDBACK_REASONS = (sampling.Reason.complaint, sampling.Reason.low_rating)
#: How far back the sampling sweep looks for feedback its decisions may have missed (see `apply_pending_feedback`).
RECONCILE_WINDOW = late_reasons.RECONCILE_WINDOW


class ConsultationNotFinished(Conflict):
    code, title = "consultation_not_finished", "Feedback can be given once the consultation has taken place"


class FeedbackAlreadyGiven(Conflict):
    code, title = "feedback_already_given", "Feedback on this consultation has already been given"


class FeedbackNotFound(NotFound):
    code, title = "feedback_not_found", "No feedback has been given on this consultation"


def feedback_reasons(*, complaint: bool, rating: int | None,
                     policy: sampling.SamplingPolicy) -> tuple[sampling.Reason, ...]:
    """The targeted reasons this feedback gives, by the same rules (and the same threshold) as a decision."""
    return late_reasons.rule_reasons(policy, FEEDBACK_REASONS, complaint=complaint, rating=rating)


async def give_feedback(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: scheduling.Viewer,
                        rating: int, complaint: str | None, ctx: audit.AuditContext,
                        policy: sampling.SamplingPolicy, now: dt.datetime) -> ConsultationFeedback:
    """The patient's rating (1-5) and optional complaint on their own finished consultation, once.

    Another patient's consultation is 404, one not yet held 409 `consultation_not_finished`, a second feedback
    409 `feedback_already_given` (also when two sends race). If the consultation's sampling decision is already
    made, the feedback updates it here, in the same transaction.
    """
    consultation = await scheduling.load(session, consultation_id, viewer, for_change=True)
    if consultation.status not in FINISHED:
        raise ConsultationNotFinished()
    if await _feedback(session, consultation.id) is not None:
        raise FeedbackAlreadyGiven()
    feedback = ConsultationFeedback(consultation_id=consultation.id, patient_id=consultation.patient_id,
                                    rating=rating, complaint=complaint or None, created_at=now)
    try:
        async with session.begin_nested():
            session.add(feedback)
    except IntegrityError:  # a second send got in between our look and our insert
        raise FeedbackAlreadyGiven() from None
    await audit.record(session, ctx=ctx, action="consultation.feedback_given", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail={"rating": rating, "complaint": feedback.complaint is not None}, now=now)
    await apply_feedback(session, feedback, policy=policy, now=now)
    return feedback


async def own_feedback(session: AsyncSession, *, consultation_id: uuid.UUID,
                       viewer: scheduling.Viewer) -> ConsultationFeedback:
    """The feedback the viewer may see on this consultation (a patient: their own); 404 if none."""
    consultation = await scheduling.load(session, consultation_id, viewer)
    feedback = await _feedback(session, consultation.id)
    if feedback is None:
        raise FeedbackNotFound()
    return feedback


async def feedback_for(session: AsyncSession, consultation_id: uuid.UUID) -> ConsultationFeedback | None:
    """The feedback on a consultation, unchecked: for services that have already decided who may read it."""
    return await _feedback(session, consultation_id)


async def feedback_facts(session: AsyncSession, consultation_id: uuid.UUID, *,
                         as_of: dt.datetime | None = None) -> tuple[bool, int | None]:
    """(complaint made?, rating) as the targeted rules read them: `(False, None)` when no feedback was given (by
    `as_of`, if given: what a decision made then saw, so a replay recomputes the same facts)."""
    feedback = await _feedback(session, consultation_id)
    if feedback is None or (as_of is not None and feedback.created_at > as_of):
        return False, None
    return feedback.complaint is not None, feedback.rating


async def apply_feedback(session: AsyncSession, feedback: ConsultationFeedback, *,
                         policy: sampling.SamplingPolicy, now: dt.datetime) -> SamplingDecision | None:
    """Bring the consultation's sampling decision up to date with this feedback, if the decision is made.

    Not yet decided: nothing to do, the decision will read the feedback (`feedback_facts`). Decided without
    the feedback's reasons: they are appended, the consultation becomes sampled if it was not, and the change is
    audited (`qa.sampling_targeted_late`). Idempotent: reasons already there are not added twice.
    """
    decision, _ = await _apply(session, feedback, policy=policy, now=now)
    return decision


async def apply_pending_feedback(session: AsyncSession, *, policy: sampling.SamplingPolicy,
                                 now: dt.datetime) -> int:
    """Recent feedback whose decision lacks its reasons, applied; how many decisions changed.

    For the sampling sweep: a decision made while the feedback's transaction was still open read no feedback,
    and the feedback saw no decision yet. Only feedback of the last `RECONCILE_WINDOW` is looked at, as such a
    pair is always minutes apart.
    """
    recent = (await session.scalars(
        select(ConsultationFeedback).join(SamplingDecision,
                                          SamplingDecision.consultation_id == ConsultationFeedback.consultation_id)
        .where(ConsultationFeedback.created_at >= now - RECONCILE_WINDOW))).all()
    changed = 0
    for feedback in recent:
        _, did_change = await _apply(session, feedback, policy=policy, now=now)
        changed += did_change
    return changed


async def _apply(session: AsyncSession, feedback: ConsultationFeedback, *, policy: sampling.SamplingPolicy,
                 now: dt.datetime) -> tuple[SamplingDecision | None, bool]:
    """The decision (if made) with the feedback's reasons, and whether this call changed it."""
    wanted = feedback_reasons(complaint=feedback.complaint is not None, rating=feedback.rating, policy=policy)
    return await late_reasons.add_reasons(session, consultation_id=feedback.consultation_id,
                                          patient_id=feedback.patient_id, reasons=wanted, now=now)


async def _feedback(session: AsyncSession, consultation_id: uuid.UUID) -> ConsultationFeedback | None:
    return (await session.scalars(select(ConsultationFeedback).where(
        ConsultationFeedback.consultation_id == consultation_id))).one_or_none()
