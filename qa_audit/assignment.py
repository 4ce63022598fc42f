"""Giving sampled consultations to QA experts: automatically as samples appear, by an admin when they reassign,
and to a second expert when a physician disputes a review.

Whom to choose is qa_audit.rules' (never the consultation's own physician, optionally not their department,
the least loaded first); here the facts are loaded and the review row written, audited."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import checklists, rules
from qa_audit.models import OPEN_STATUSES, Review, ReviewStatus, SamplingDecision
from qa_audit.problems import NoEligibleExpert, WrongStep
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import User
from server.http.problems import FieldError
from server.people.models import Physician, QaExpert
from server.scheduling.models import Consultation
from server.settings import Settings


async def expert_loads(session: AsyncSession) -> list[rules.ExpertLoad]:
    """Every active expert with their open reviews counted."""
    open_counts = (select(Review.expert_id, func.count().label("open"))
                   .where(Review.status.in_(OPEN_STATUSES)).group_by(Review.expert_id).subquery())
    rows = (await session.execute(
        select(QaExpert.id, QaExpert.department, QaExpert.physician_id, func.coalesce(open_counts.c.open, 0))
        .join(User, User.id == QaExpert.user_id).outerjoin(open_counts, open_counts.c.expert_id == QaExpert.id)
        .where(User.is_active.is_(True)))).all()
    return [rules.ExpertLoad(expert_id=row[0], department=row[1], physician_id=row[2], open_reviews=row[3])
            for row in rows]


async def case_of(session: AsyncSession, physician_id: uuid.UUID) -> rules.Case:
    department = await session.scalar(select(Physician.department).where(Physician.id == physician_id))
    return rules.Case(physician_id=physician_id, department=department)


def due_date(now: dt.datetime, settings: Settings) -> dt.date:
    today = now.astimezone(ZoneInfo(settings.clinic_time_zone)).date()
    return rules.working_days_after(today, settings.qa_review_working_days)


async def _create(session: AsyncSession, *, consultation: Consultation, expert_id: uuid.UUID, round_: int,
                  settings: Settings, now: dt.datetime, ctx: AuditContext,
                  assigned_by: uuid.UUID | None = None) -> Review | None:
    """The review row, or None when another run created this consultation's round first."""
    template = await checklists.current(session)
    review = Review(consultation_id=consultation.id, physician_id=consultation.physician_id, expert_id=expert_id,
                    template_id=template.id, round=round_, status=ReviewStatus.assigned, assigned_at=now,
                    due_on=due_date(now, settings), assigned_by=assigned_by, answers={}, notes=[],
                    failed_items=[])
    try:
        async with session.begin_nested():
            session.add(review)
    except IntegrityError:
        return None
    await audit.record(session, ctx=ctx, action="qa.review_assigned", object_type="qa_review", object_id=review.id,
                       subject_patient_id=consultation.patient_id,
                       detail={"consultation_id": str(consultation.id), "expert_id": str(expert_id),
                               "round": round_}, now=now)
    return review


async def assign_pending(session: AsyncSession, *, settings: Settings, now: dt.datetime) -> list[Review]:
    """A first review for every sampled consultation that has none, each to the least loaded eligible expert.
    A consultation nobody may take waits (the admin's queue shows it) and is tried again next run. All of them
    are looked at every run (they are a month's samples at most), so a backlog nobody may take never hides a
    newer one somebody could."""
    waiting = (await session.scalars(
        select(Consultation).join(SamplingDecision, SamplingDecision.consultation_id == Consultation.id)
        .outerjoin(Review, (Review.consultation_id == Consultation.id) & (Review.round == 1))
        .where(SamplingDecision.sampled.is_(True), Review.id.is_(None))
        .order_by(SamplingDecision.decided_at))).all()
    loads = {load.expert_id: load for load in await expert_loads(session)}
    created: list[Review] = []
    for consultation in waiting:
        case = await case_of(session, consultation.physician_id)
        chosen = rules.choose_expert(list(loads.values()), case,
                                     separate_departments=settings.qa_separate_departments)
        if chosen is None:
            continue
        review = await _create(session, consultation=consultation, expert_id=chosen.expert_id, round_=1,
                               settings=settings, now=now, ctx=audit.SYSTEM)
        if review is not None:
            loads[chosen.expert_id] = rules.ExpertLoad(chosen.expert_id, chosen.open_reviews + 1,
                                                       chosen.department, chosen.physician_id)
            created.append(review)
    return created


async def unassigned(session: AsyncSession) -> list[uuid.UUID]:
    """Sampled consultations still without a first review (no eligible expert yet): for the admin to see."""
    return list((await session.scalars(
        select(SamplingDecision.consultation_id)
        .outerjoin(Review, (Review.consultation_id == SamplingDecision.consultation_id) & (Review.round == 1))
        .where(SamplingDecision.sampled.is_(True), Review.id.is_(None)))).all())


async def second_review(session: AsyncSession, first: Review, *, settings: Settings, now: dt.datetime,
                        ctx: AuditContext) -> Review:
    """After a dispute: the same consultation to another expert than the first one."""
    consultation = await session.get_one(Consultation, first.consultation_id)
    chosen = await _choose(session, first.physician_id, settings=settings, excluded=[first.expert_id])
    review = await _create(session, consultation=consultation, expert_id=chosen, round_=first.round + 1,
                           settings=settings, now=now, ctx=ctx)
    if review is None:
        raise WrongStep("a second review already exists")
    return review


async def _choose(session: AsyncSession, physician_id: uuid.UUID, *, settings: Settings,
                  excluded: Iterable[uuid.UUID] = ()) -> uuid.UUID:
    chosen = rules.choose_expert(await expert_loads(session), await case_of(session, physician_id),
                                 separate_departments=settings.qa_separate_departments, excluded=excluded)
    if chosen is None:
        raise NoEligibleExpert()
    return chosen.expert_id


async def reassign(session: AsyncSession, review: Review, *, expert_id: uuid.UUID | None, by: uuid.UUID,
                   settings: Settings, now: dt.datetime, ctx: AuditContext) -> Review:
    """An admin gives an open review to another expert (named, or the least loaded eligible one). The new expert
    starts afresh: the draft was the former expert's judgement, not theirs."""
    await session.refresh(review, with_for_update=True)  # a submit racing the reassignment: one of them wins
    if rules.next_status(review.status, "reassign") is None:
        raise WrongStep(f"a {review.status.value} review cannot be reassigned")
    # Neither the current expert nor, for a second review, whoever reviewed an earlier round.
    excluded = [review.expert_id, *(await session.scalars(select(Review.expert_id).where(
        Review.consultation_id == review.consultation_id, Review.round < review.round))).all()]
    if expert_id is None:
        expert_id = await _choose(session, review.physician_id, settings=settings, excluded=excluded)
    else:
        loads = {load.expert_id: load for load in await expert_loads(session)}
        load = loads.get(expert_id)
        if load is None or not rules.eligible(
                load, await case_of(session, review.physician_id),
                separate_departments=settings.qa_separate_departments, excluded=excluded):
            raise NoEligibleExpert("this expert may not review this consultation", errors=[FieldError(
                field="expert_id", message="Not an active expert who may review this consultation",
                type="not_eligible")])
    former = review.expert_id
    review.expert_id, review.status, review.assigned_at, review.assigned_by = (
        expert_id, ReviewStatus.assigned, now, by)
    review.due_on = due_date(now, settings)
    review.answers, review.notes, review.summary, review.started_at, review.reminded_at = {}, [], "", None, None
    review.revision += 1
    await audit.record(session, ctx=ctx, action="qa.review_reassigned", object_type="qa_review",
                       object_id=review.id, detail={"from": str(former), "to": str(expert_id)}, now=now)
    return review
