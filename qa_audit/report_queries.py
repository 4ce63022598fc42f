"""Loading the QA reports: per physician-month aggregates in SQL (GROUP BY), never a row per consultation.

A year of a 100-physician clinic is 360,000 consultations; what leaves the database is one row per physician-month
and one per distinct set of failed items, and `qa_audit.reports` (pure) does the rest (bench/qa.py measures it).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from fractions import Fraction

from sqlalchemy import ColumnElement, String, and_, case, cast, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from qa_audit import reports
from qa_audit.models import OPEN_STATUSES, ChecklistTemplate, Review, ReviewStatus, SamplingDecision
from server.auth.models import User
from server.people.models import Physician
from server.scheduling.models import Consultation, ConsultationStatus

COMPLETED = (ConsultationStatus.completed, ConsultationStatus.documented)
DONE_STATUSES = (ReviewStatus.submitted, ReviewStatus.acknowledged, ReviewStatus.disputed, ReviewStatus.closed)


class AllDepartments:
    """The department filter's "no filter" (None already means "physicians without a department")."""


ALL = AllDepartments()
DepartmentFilter = str | None | AllDepartments


async def physicians(session: AsyncSession, *, department: DepartmentFilter = ALL,
                     physician_id: uuid.UUID | None = None) -> list[reports.PhysicianInfo]:
    """The physicians a report covers, with their names and departments."""
    query = select(Physician.id, User.full_name, Physician.department).join(User, User.id == Physician.user_id)
    if physician_id is not None:
        query = query.where(Physician.id == physician_id)
    if not isinstance(department, AllDepartments):
        query = query.where(Physician.department.is_(None) if department is None
                            else Physician.department == department)
    return [reports.PhysicianInfo(pid, name, dept) for pid, name, dept in (await session.execute(query)).all()]


async def departments(session: AsyncSession) -> list[str | None]:
    """The departments physicians belong to (None among them when some belong to none), for the filter."""
    found = (await session.scalars(select(Physician.department).distinct())).all()
    return sorted(found, key=lambda name: (name is None, (name or "").casefold()))


async def physician_of_user(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(select(Physician.id).where(Physician.user_id == user_id))


def _within(period: reports.Period, physician_ids: Sequence[uuid.UUID] | None) -> list[ColumnElement[bool]]:
    """The decisions of the period's months (and of these physicians, when given)."""
    found = [SamplingDecision.month >= period.first, SamplingDecision.month <= period.last]
    if physician_ids is not None:
        found.append(SamplingDecision.physician_id.in_(physician_ids))
    return found


async def month_samples(session: AsyncSession, *, period: reports.Period,
                        physician_ids: Sequence[uuid.UUID] | None = None) -> list[reports.MonthSample]:
    """Per physician-month: completed consultations (by their decision's month) and how many are sampled."""
    query = (
        select(SamplingDecision.physician_id, SamplingDecision.month, func.count(),
               func.sum(case((SamplingDecision.sampled, 1), else_=0)))
        .join(Consultation, Consultation.id == SamplingDecision.consultation_id)
        .where(Consultation.status.in_(COMPLETED))
        .where(*_within(period, physician_ids))
        .group_by(SamplingDecision.physician_id, SamplingDecision.month))
    return [reports.MonthSample(pid, month, int(count), int(sampled or 0))
            for pid, month, count, sampled in (await session.execute(query)).all()]


def _standing() -> object:
    """A done review not overruled by a later done round of the same consultation's review."""
    later = aliased(Review)
    return and_(Review.status.in_(DONE_STATUSES), ~exists().where(
        later.consultation_id == Review.consultation_id, later.round > Review.round,
        later.status.in_(DONE_STATUSES)))


async def month_reviews(session: AsyncSession, *, period: reports.Period, today: dt.date,
                        physician_ids: Sequence[uuid.UUID] | None = None) -> list[reports.MonthReviews]:
    """Per physician-month (the consultation's): reviews done and overdue, and the standing reviews' scores."""
    standing = _standing()
    scored = and_(standing, Review.score.is_not(None))  # type: ignore[arg-type]  # a SQL expression
    query = (
        select(SamplingDecision.physician_id, SamplingDecision.month,
               func.sum(case((Review.status.in_(DONE_STATUSES), 1), else_=0)),
               func.sum(case((and_(Review.status.in_(OPEN_STATUSES), Review.due_on < today), 1), else_=0)),
               func.sum(case((scored, 1), else_=0)),
               func.sum(case((scored, Review.score), else_=literal(0.0))),
               func.sum(case((standing, func.coalesce(Review.critical_failures, 0)), else_=0)))  # type: ignore[arg-type]
        .join(SamplingDecision, SamplingDecision.consultation_id == Review.consultation_id)
        .where(*_within(period, physician_ids))
        .group_by(SamplingDecision.physician_id, SamplingDecision.month))
    return [reports.MonthReviews(pid, month, int(done or 0), int(overdue or 0), int(count or 0), float(total or 0),
                                 int(critical or 0))
            for pid, month, done, overdue, count, total, critical in (await session.execute(query)).all()]


async def failures(session: AsyncSession, *, period: reports.Period,
                   physician_ids: Sequence[uuid.UUID] | None = None) -> list[reports.FailedItems]:
    """The standing reviews' failed items, grouped by physician and the list's text: few distinct lists."""
    listed = cast(Review.failed_items, String)  # JSON has no equality on PostgreSQL; its text does
    query = (
        select(SamplingDecision.physician_id, listed, func.count())
        .join(SamplingDecision, SamplingDecision.consultation_id == Review.consultation_id)
        .where(_standing())  # type: ignore[arg-type]  # a SQL expression
        .where(*_within(period, physician_ids))
        .group_by(SamplingDecision.physician_id, listed))
    found = []
    for pid, text, count in (await session.execute(query)).all():
        items = json.loads(text) if text else []
        if items:
            found.append(reports.FailedItems(pid, tuple(str(key) for key in items), int(count)))
    return found


async def item_texts(session: AsyncSession) -> dict[str, dict[str, str]]:
    rows = (await session.execute(select(ChecklistTemplate.version, ChecklistTemplate.items))).all()
    return reports.item_texts((version, items) for version, items in rows)


async def report(session: AsyncSession, *, period: reports.Period, rate: Fraction, today: dt.date,
                 department: DepartmentFilter = ALL, physician_id: uuid.UUID | None = None) -> reports.Report:
    """The report over `period`: the clinic's (optionally one department's), or one physician's."""
    people = await physicians(session, department=department, physician_id=physician_id)
    ids = None if isinstance(department, AllDepartments) and physician_id is None else [p.id for p in people]
    return reports.build(people, await month_samples(session, period=period, physician_ids=ids),
                         await month_reviews(session, period=period, today=today, physician_ids=ids),
                         await failures(session, period=period, physician_ids=ids), period=period, rate=rate)
