"""The QA experts' work lists: an expert's own queue (`/qa/queue`) and the admin's overview of everyone's
(`/qa/overview`: open and overdue reviews per expert, samples nobody may take yet, reassignment).

Both list only what `qa_audit.reviews.visible` lets the reader see; the rows name the consultation's date and
physician, never the patient (the review screen shows who, and records that it did).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from qa_audit import assignment, materials, reviews, rules
from qa_audit.models import OPEN_STATUSES, Review, ReviewStatus
from server import keys
from server.auth.models import Role, User
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import ProblemError
from server.people.models import QaExpert
from web.i18n import N_
from web.pages import PageAnswer, PageHandler, page_handler, page_user, read_form, render

STATUS_NAMES = {"assigned": N_("Assigned"), "in_review": N_("In review"), "submitted": N_("Submitted"),
                "acknowledged": N_("Acknowledged"), "disputed": N_("Disputed"), "closed": N_("Closed")}
LEAST_LOADED = ""  # the reassign form's value for "whoever has the fewest open reviews"
REASSIGN_ERRORS = {"no_eligible_expert": N_("This expert may not review this consultation (their own practice or "
                                            "department, or its first reviewer), or nobody else may."),
                   "review_wrong_step": N_("Only an open review can be reassigned.")}


async def page_reader(request: web.Request, roles: set[Role]) -> tuple[Principal, reviews.Reader]:
    """The signed-in user, if the page is for their role, as the review services know them."""
    principal = await page_user(request, roles=roles)
    async with read(request) as db:
        return principal, await reviews.reader_for(db, principal.user_id, principal.role)


def clinic_zone(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[keys.settings].clinic_time_zone)


def clinic_today(request: web.Request) -> dt.date:
    """Due dates are the clinic's calendar days, so "overdue" turns at the clinic's midnight."""
    return utcnow().astimezone(clinic_zone(request)).date()


async def not_found(request: web.Request) -> PageAnswer:
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": "/"}, status=404))


async def path_id(request: web.Request, name: str = "review_id") -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise await not_found(request) from None


def _row(review: Review, headline: materials.Headline | None, today: dt.date) -> dict[str, Any]:
    return {"review": review, "headline": headline, "overdue": rules.overdue(review.status, review.due_on, today)}


async def queue_page(request: web.Request) -> web.Response:
    """The expert's reviews: the open ones first, soonest due first (overdue ones marked), the done ones below."""
    _, reader = await page_reader(request, {Role.qa_expert})
    today = clinic_today(request)
    async with read(request) as db:
        found = await reviews.list_reviews(db, reader, limit=500)
        heads = await materials.headlines(db, {review.consultation_id for review in found})
    rows = [_row(review, heads.get(review.consultation_id), today) for review in found]
    done = sorted((row for row in rows if row["review"].status not in OPEN_STATUSES),
                  key=lambda row: row["review"].submitted_at or row["review"].assigned_at, reverse=True)
    return await render(request, "qa/queue.html", {
        "open": [row for row in rows if row["review"].status in OPEN_STATUSES], "done": done,
        "overdue_count": sum(row["overdue"] for row in rows), "zone": clinic_zone(request)})


async def _experts(db: Any) -> dict[uuid.UUID, str]:
    rows = (await db.execute(select(QaExpert.id, User.full_name).join(User, User.id == QaExpert.user_id)
                             .where(User.is_active.is_(True)).order_by(User.full_name))).all()
    return {row[0]: row[1] for row in rows}


async def overview_response(request: web.Request, *, error: str | None = None, error_review: uuid.UUID | None = None,
                            status: int = 200) -> web.Response:
    """Every expert's open and overdue reviews, what waits for an expert, and a reassign form per open review."""
    _, reader = await page_reader(request, {Role.admin})
    today = clinic_today(request)
    async with read(request) as db:
        loads = await assignment.expert_loads(db)
        names = await _experts(db)
        open_reviews = await reviews.list_reviews(db, reader, statuses=OPEN_STATUSES, limit=1000)
        waiting = await assignment.unassigned(db)
        heads = await materials.headlines(db, {r.consultation_id for r in open_reviews} | set(waiting))
    overdue = Counter(review.expert_id for review in open_reviews if rules.overdue(review.status, review.due_on,
                                                                                   today))
    workload = [{"expert_id": load.expert_id, "name": names.get(load.expert_id, ""), "open": load.open_reviews,
                 "overdue": overdue[load.expert_id], "department": load.department}
                for load in sorted(loads, key=lambda load: (-load.open_reviews, names.get(load.expert_id, "")))]
    return await render(request, "qa/overview.html", {
        "workload": workload, "experts": names,
        "reviews": [_row(review, heads.get(review.consultation_id), today) for review in open_reviews],
        "unassigned": [heads[c] for c in waiting if c in heads], "error": error, "error_review": error_review,
        "reassigned": request.query.get("reassigned"), "zone": clinic_zone(request)}, status=status)


async def overview_page(request: web.Request) -> web.Response:
    return await overview_response(request)


async def reassign_submit(request: web.Request) -> web.Response:
    """The admin gives an open review to the chosen expert, or to the least loaded one who may take it."""
    principal, reader = await page_reader(request, {Role.admin})
    review_id = await path_id(request)
    form = await read_form(request, back="/qa/overview")
    chosen = form.get("expert_id", LEAST_LOADED).strip()
    try:
        expert_id = uuid.UUID(chosen) if chosen != LEAST_LOADED else None
    except ValueError:
        return await overview_response(request, error=REASSIGN_ERRORS["no_eligible_expert"],
                                       error_review=review_id, status=422)
    try:
        async with tx(request) as db:
            review = await reviews.get(db, reader, review_id)
            await assignment.reassign(db, review, expert_id=expert_id, by=principal.user_id,
                                      settings=request.app[keys.settings], now=utcnow(),
                                      ctx=audit_context(request, principal))
    except ProblemError as problem:
        if problem.status == 404:
            raise await not_found(request) from None
        if problem.code not in REASSIGN_ERRORS:
            raise
        return await overview_response(request, error=REASSIGN_ERRORS[problem.code], error_review=review_id,
                                       status=problem.status)
    raise web.HTTPSeeOther(f"/qa/overview?reassigned={review_id}")


ROUTES: list[tuple[str, str, PageHandler]] = [
    ("GET", "/qa/queue", queue_page),
    ("GET", "/qa/overview", overview_page),
    ("POST", "/qa/overview/reviews/{review_id}/reassign", reassign_submit),
]


def setup(app: web.Application) -> None:
    """The queue and overview routes, and the status names every QA page shows."""
    aiohttp_jinja2.get_env(app).globals.update(QA_STATUSES=STATUS_NAMES, ReviewStatus=ReviewStatus)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, page_handler(handler))
