"""A review's way from the expert's draft to its close, and who may see it on the way.

Access is deny-by-default and answers 404 for what is not yours: an expert sees the reviews assigned to them, a
physician the done reviews of their own consultations (never a draft about them, never a colleague's), an admin
all. Every step is an audit entry."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import assignment, rules
from qa_audit.models import ChecklistTemplate, Review, ReviewStatus
from qa_audit.problems import ReviewIncomplete, ReviewInvalid, ReviewOutdated, WrongStep
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role
from server.http.problems import NotFound
from server.people.models import Physician, QaExpert
from server.scheduling.models import Consultation
from server.settings import Settings

DONE = (ReviewStatus.submitted, ReviewStatus.acknowledged, ReviewStatus.disputed, ReviewStatus.closed)


@dataclass(frozen=True)
class Reader:
    """Who asks, with the expert or physician id that decides what they may see."""

    user_id: uuid.UUID
    role: Role
    expert_id: uuid.UUID | None = None
    physician_id: uuid.UUID | None = None


async def reader_for(session: AsyncSession, user_id: uuid.UUID, role: Role) -> Reader:
    if role is Role.qa_expert:
        return Reader(user_id, role, expert_id=await session.scalar(
            select(QaExpert.id).where(QaExpert.user_id == user_id)))
    if role is Role.physician:
        return Reader(user_id, role, physician_id=await session.scalar(
            select(Physician.id).where(Physician.user_id == user_id)))
    return Reader(user_id, role)


def visible(reader: Reader) -> Select[Review]:
    """The reviews `reader` may see, as a query to filter further."""
    query = select(Review)
    if reader.role is Role.admin:
        return query
    if reader.role is Role.qa_expert and reader.expert_id is not None:
        return query.where(Review.expert_id == reader.expert_id)
    if reader.role is Role.physician and reader.physician_id is not None:
        return query.where(Review.physician_id == reader.physician_id, Review.status.in_(DONE))
    return query.where(Review.id.is_(None))


async def list_reviews(session: AsyncSession, reader: Reader, *, statuses: tuple[ReviewStatus, ...] | None = None,
                       limit: int = 200) -> list[Review]:
    query = visible(reader)
    if statuses:
        query = query.where(Review.status.in_(statuses))
    return list((await session.scalars(query.order_by(Review.due_on, Review.assigned_at).limit(limit))).all())


async def get(session: AsyncSession, reader: Reader, review_id: uuid.UUID) -> Review:
    review = (await session.scalars(visible(reader).where(Review.id == review_id))).one_or_none()
    if review is None:
        raise NotFound()
    return review


async def template_of(session: AsyncSession, review: Review) -> ChecklistTemplate:
    return await session.get_one(ChecklistTemplate, review.template_id)  # RESTRICT keeps it


async def audit_opened(session: AsyncSession, found: Review | list[Review], *, ctx: AuditContext,
                       now: dt.datetime) -> None:
    """A review speaks of a patient's consultation: each one read, alone or in a list, is in the access log,
    like the record's."""
    listed = found if isinstance(found, list) else [found]
    rows = (await session.execute(select(Consultation.id, Consultation.patient_id).where(
        Consultation.id.in_([review.consultation_id for review in listed])))).all()
    patients = {row.id: row.patient_id for row in rows}
    for review in listed:
        await audit.record(session, ctx=ctx, action="qa.review_opened", object_type="qa_review",
                           object_id=review.id, subject_patient_id=patients.get(review.consultation_id), now=now)


async def lock(session: AsyncSession, review: Review) -> None:
    """Re-read the review under a row lock before changing it: on PostgreSQL two requests (an acknowledgement and
    a dispute, a stale autosave and a submit) would otherwise both pass their checks on the copy they read first,
    and the later write would silently undo the earlier one. Every check after this sees the committed state."""
    await session.refresh(review, with_for_update=True)


def _own(review: Review, reader: Reader) -> None:
    if reader.role is not Role.qa_expert or review.expert_id != reader.expert_id:
        raise NotFound()


def _step(review: Review, action: str) -> ReviewStatus:
    status = rules.next_status(review.status, action, round_=review.round)
    if status is None:
        raise WrongStep(f"a {review.status.value} review cannot be {action}d here")
    return status


async def save_draft(session: AsyncSession, review: Review, reader: Reader, *, answers: dict[str, Any],
                     notes: list[dict[str, Any]], summary: str, revision: int | None, now: dt.datetime,
                     ctx: AuditContext) -> Review:
    """The expert's autosave: the whole draft replaced, refused if someone saved since `revision`."""
    _own(review, reader)
    await lock(session, review)
    status = _step(review, "save")
    if revision is not None and revision != review.revision:
        raise ReviewOutdated(review.revision)
    template = await template_of(session, review)
    problems = rules.draft_problems(template.items, answers, notes)
    if len(summary) > rules.MAX_COMMENT:
        problems.append(rules.Problem("summary", f"At most {rules.MAX_COMMENT} characters"))
    if problems:
        raise ReviewInvalid(problems)
    if review.started_at is None:
        review.started_at = now
        await audit.record(session, ctx=ctx, action="qa.review_started", object_type="qa_review",
                           object_id=review.id, now=now)
    review.answers = {key: {"answer": entry.get("answer"), "comment": entry.get("comment") or "",
                            "at": entry.get("at")} for key, entry in answers.items()}
    review.notes = sorted(({"at": note["at"], "text": note["text"].strip()} for note in notes),
                          key=lambda note: note["at"])
    review.summary, review.status = summary, status
    review.revision += 1
    return review


async def submit(session: AsyncSession, review: Review, reader: Reader, *, settings: Settings, now: dt.datetime,
                 ctx: AuditContext) -> Review:
    """Scored and handed to the physician. A second review closes the dispute: it and the first are closed."""
    _own(review, reader)
    await lock(session, review)
    status = _step(review, "submit")
    template = await template_of(session, review)
    problems = rules.submission_problems(template.items, review.answers)
    if problems:
        raise ReviewIncomplete(problems)
    scored = rules.score(template.items, review.answers)
    review.score, review.critical_failures, review.failed_items = (
        scored.score, scored.critical_failures, scored.failed_items)
    review.status, review.submitted_at = status, now
    review.started_at = review.started_at or now
    review.revision += 1
    if status is ReviewStatus.closed:
        review.closed_at = now
        first = (await session.scalars(select(Review).where(
            Review.consultation_id == review.consultation_id, Review.round == review.round - 1))).one_or_none()
        if first is not None and rules.next_status(first.status, "close") is not None:
            first.status, first.closed_at = ReviewStatus.closed, now
    await audit.record(session, ctx=ctx, action="qa.review_submitted", object_type="qa_review",
                       object_id=review.id, detail={"score": scored.score,
                                                    "critical_failures": scored.critical_failures}, now=now)
    return review


def _physicians(review: Review, reader: Reader) -> None:
    if reader.role is not Role.physician or review.physician_id != reader.physician_id:
        raise NotFound()


async def acknowledge(session: AsyncSession, review: Review, reader: Reader, *, now: dt.datetime,
                      ctx: AuditContext) -> Review:
    _physicians(review, reader)
    await lock(session, review)
    review.status = _step(review, "acknowledge")
    review.responded_at = review.closed_at = now
    review.revision += 1
    await audit.record(session, ctx=ctx, action="qa.review_acknowledged", object_type="qa_review",
                       object_id=review.id, now=now)
    return review


async def dispute(session: AsyncSession, review: Review, reader: Reader, *, response: str, settings: Settings,
                  now: dt.datetime, ctx: AuditContext) -> Review:
    """The physician's answer, and a second review by another expert."""
    _physicians(review, reader)
    await lock(session, review)
    review.status = _step(review, "dispute")
    review.response, review.responded_at = response.strip(), now
    review.revision += 1
    await audit.record(session, ctx=ctx, action="qa.review_disputed", object_type="qa_review",
                       object_id=review.id, now=now)
    return await assignment.second_review(session, review, settings=settings, now=now, ctx=ctx)


async def overdue(session: AsyncSession, *, settings: Settings, now: dt.datetime) -> list[Review]:
    today = now.astimezone(ZoneInfo(settings.clinic_time_zone)).date()
    return list((await session.scalars(select(Review).where(
        Review.status.in_((ReviewStatus.assigned, ReviewStatus.in_review)), Review.due_on < today)
        .order_by(Review.due_on))).all())


async def remind_overdue(session: AsyncSession, *, settings: Settings, now: dt.datetime) -> list[Review]:
    """Overdue reviews not reminded today: marked reminded and audited (the expert's queue and the admin's
    page show them; the Celery task mails the expert)."""
    today = now.astimezone(ZoneInfo(settings.clinic_time_zone)).date()
    zone = ZoneInfo(settings.clinic_time_zone)
    due = [review for review in await overdue(session, settings=settings, now=now)
           if review.reminded_at is None or review.reminded_at.astimezone(zone).date() < today]
    for review in due:
        review.reminded_at = now
        await audit.record(session, ctx=audit.SYSTEM, action="qa.review_overdue_reminded",
                           object_type="qa_review", object_id=review.id,
                           detail={"due_on": review.due_on.isoformat()}, now=now)
    return due
