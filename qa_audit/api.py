"""REST endpoints of the QA audit: an expert's queue and checklist, the physician's answer, an admin's
reassignment. Handlers parse, authorise through the service's visibility rule, call one service."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import assignment, checklists, reviews, rules, schemas
from qa_audit.models import OPEN_STATUSES, ChecklistTemplate, Review, ReviewStatus
from server import keys
from server.audit import services as audit
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.parsing import path_uuid
from server.http.principal import Principal, audit_context, authenticate
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.records.api import if_match

router = ApiRouter("qa")
BASE = "/api/v1/qa/reviews"
EVERYONE = [Role.qa_expert, Role.physician, Role.admin]


def checklist_out(template: ChecklistTemplate) -> schemas.ChecklistOut:
    return schemas.ChecklistOut(id=template.id, code=template.code, version=template.version,
                                title=template.title,
                                items=[schemas.ChecklistItemOut.model_validate(item) for item in template.items])


def review_out(review: Review, template: ChecklistTemplate, *, role: Role, today: dt.date) -> schemas.ReviewOut:
    return schemas.ReviewOut(
        id=review.id, consultation_id=review.consultation_id, physician_id=review.physician_id,
        expert_id=None if role is Role.physician else review.expert_id, round=review.round,
        status=review.status.value, assigned_at=review.assigned_at, due_on=review.due_on,
        overdue=rules.overdue(review.status, review.due_on, today),
        revision=review.revision, answers=review.answers, notes=review.notes, summary=review.summary,
        started_at=review.started_at, submitted_at=review.submitted_at, score=review.score,
        critical_failures=review.critical_failures, failed_items=review.failed_items, response=review.response,
        responded_at=review.responded_at, closed_at=review.closed_at, checklist=checklist_out(template))


async def _reader(request: web.Request) -> tuple[Principal, reviews.Reader]:
    principal = await authenticate(request)
    async with tx(request) as session:
        return principal, await reviews.reader_for(session, principal.user_id, principal.role)


def _today(request: web.Request) -> dt.date:
    return utcnow().astimezone(ZoneInfo(request.app[keys.settings].clinic_time_zone)).date()


def _statuses(value: str | None) -> tuple[ReviewStatus, ...] | None:
    if value is None:
        return None
    if value == "open":
        return OPEN_STATUSES
    if value == "done":
        return reviews.DONE
    return (ReviewStatus(value),)


@router.route("GET", BASE, summary="Reviews you may see: an expert's assigned, a physician's own, all for admins",
              query=schemas.ReviewsQuery, response=schemas.ReviewList, roles=EVERYONE)
async def list_reviews(request: web.Request, query: schemas.ReviewsQuery) -> web.Response:
    """A physician sees only done reviews of their own consultations, without the expert's identity. Each review
    listed is an audit entry `qa.review_opened`, as opening it is."""
    principal, reader = await _reader(request)
    async with tx(request) as session:
        found = await reviews.list_reviews(session, reader, statuses=_statuses(query.status))
        await reviews.audit_opened(session, found, ctx=audit_context(request, principal), now=utcnow())
        items = [review_out(review, await reviews.template_of(session, review), role=principal.role,
                            today=_today(request)) for review in found]
    return json_response(schemas.ReviewList(items=items))


async def _answer(request: web.Request, principal: Principal, review: Review, session: AsyncSession,
                  *, status: int = 200) -> web.Response:
    template = await reviews.template_of(session, review)
    out = review_out(review, template, role=principal.role, today=_today(request))
    return json_response(out, status=status, headers={"ETag": f'"{review.revision}"'})


@router.route("GET", f"{BASE}/{{review_id}}", summary="One review with its checklist",
              response=schemas.ReviewOut, roles=EVERYONE, errors=(404,))
async def get_review(request: web.Request) -> web.Response:
    principal, reader = await _reader(request)
    async with tx(request) as session:
        review = await reviews.get(session, reader, path_uuid(request, "review_id"))
        await reviews.audit_opened(session, review, ctx=audit_context(request, principal), now=utcnow())
        return await _answer(request, principal, review, session)


@router.route("PUT", f"{BASE}/{{review_id}}/draft", summary="Autosave the checklist (If-Match; 412 when stale)",
              body=schemas.DraftIn, response=schemas.ReviewOut, roles=[Role.qa_expert], errors=(404, 409, 412, 422))
async def put_draft(request: web.Request, body: schemas.DraftIn) -> web.Response:
    principal, reader = await _reader(request)
    header = if_match(request)
    async with tx(request) as session:
        review = await reviews.get(session, reader, path_uuid(request, "review_id"))
        await reviews.save_draft(
            session, review, reader,
            answers={key: answer.model_dump() for key, answer in body.answers.items()},
            notes=[note.model_dump() for note in body.notes], summary=body.summary,
            revision=header if header is not None else body.revision, now=utcnow(),
            ctx=audit_context(request, principal))
        return await _answer(request, principal, review, session)


@router.route("POST", f"{BASE}/{{review_id}}/submit", summary="Submit: scored, and handed to the physician",
              response=schemas.ReviewOut, roles=[Role.qa_expert], errors=(404, 409, 422))
async def submit(request: web.Request) -> web.Response:
    """422 `review_incomplete` names every unanswered item and every "no" without a comment."""
    principal, reader = await _reader(request)
    async with tx(request) as session:
        review = await reviews.get(session, reader, path_uuid(request, "review_id"))
        await reviews.submit(session, review, reader, settings=request.app[keys.settings], now=utcnow(),
                             ctx=audit_context(request, principal))
        return await _answer(request, principal, review, session)


@router.route("POST", f"{BASE}/{{review_id}}/acknowledge", summary="The physician accepts the review",
              response=schemas.ReviewOut, roles=[Role.physician], errors=(404, 409))
async def acknowledge(request: web.Request) -> web.Response:
    principal, reader = await _reader(request)
    async with tx(request) as session:
        review = await reviews.get(session, reader, path_uuid(request, "review_id"))
        await reviews.acknowledge(session, review, reader, now=utcnow(), ctx=audit_context(request, principal))
        return await _answer(request, principal, review, session)


@router.route("POST", f"{BASE}/{{review_id}}/dispute", summary="The physician disputes: a second expert reviews",
              body=schemas.DisputeIn, response=schemas.ReviewOut, roles=[Role.physician], errors=(404, 409, 422))
async def dispute(request: web.Request, body: schemas.DisputeIn) -> web.Response:
    """409 `no_eligible_expert` when no other expert may take the second review; nothing changes then."""
    principal, reader = await _reader(request)
    async with tx(request) as session:
        review = await reviews.get(session, reader, path_uuid(request, "review_id"))
        await reviews.dispute(session, review, reader, response=body.response, settings=request.app[keys.settings],
                              now=utcnow(), ctx=audit_context(request, principal))
        return await _answer(request, principal, review, session)


@router.route("POST", f"{BASE}/{{review_id}}/reassign", summary="Give an open review to another expert",
              body=schemas.ReassignIn, response=schemas.ReviewOut, roles=[Role.admin], errors=(404, 409))
async def reassign(request: web.Request, body: schemas.ReassignIn) -> web.Response:
    principal, reader = await _reader(request)
    async with tx(request) as session:
        review = await reviews.get(session, reader, path_uuid(request, "review_id"))
        await assignment.reassign(session, review, expert_id=body.expert_id, by=principal.user_id,
                                  settings=request.app[keys.settings], now=utcnow(),
                                  ctx=audit_context(request, principal))
        return await _answer(request, principal, review, session)


@router.route("GET", "/api/v1/qa/checklists", summary="The checklists, every version (the newest is in use)",
              response=schemas.ChecklistList, roles=[Role.qa_expert, Role.admin])
async def list_checklists(request: web.Request) -> web.Response:
    async with tx(request) as session:
        found = await checklists.all_versions(session)
        return json_response(schemas.ChecklistList(items=[checklist_out(template) for template in found]))


@router.route("POST", "/api/v1/qa/checklists", summary="Publish a new version of a checklist",
              body=schemas.ChecklistIn, response=schemas.ChecklistOut, status=201, roles=[Role.admin],
              errors=(422,))
async def publish_checklist(request: web.Request, body: schemas.ChecklistIn) -> web.Response:
    """New reviews are filled against it; reviews already assigned keep their version, so a past score keeps its
    meaning. Items keep their keys across versions, as the reports count failures by key. Audited
    `qa.checklist_published`."""
    principal = await authenticate(request)
    async with tx(request) as session:
        template = await checklists.publish(
            session, code=body.code, title=body.title.model_dump(),
            items=[item.model_dump() for item in body.items])
        await audit.record(session, ctx=audit_context(request, principal), action="qa.checklist_published",
                           object_type="qa_checklist", object_id=template.id,
                           detail={"code": template.code, "version": template.version}, now=utcnow())
        return json_response(checklist_out(template), status=201)
