"""My consultations: the list, one consultation, and cancelling or moving it.

Reached through the domain's viewer check, so a patient only ever sees their own; what the patient may still do
(change, check in) is worked out from the same rules and windows the API applies, so the page never offers what
the service would refuse. A refusal shows the same page again with a plain message at the top.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import keys
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from server.people.models import Physician
from server.scheduling import queries, rules, services
from server.scheduling.api import viewer_for
from server.scheduling.models import ConsultationStatus, Questionnaire
from server.scheduling.screening import QuestionnaireDefinition
from web.pages import page_user, read_form
from web.patient_pages.formatting import iso, link
from web.patient_pages.forms import parse_date, parse_instant, problem_code
from web.patient_pages.own_consultation import (
    consultation_id_of,
    load_own,
    patient_and_consultation_id,
    publish_to_physician,
)
from web.patient_pages.rendering import PATIENTS, not_found, render_page
from web.patient_pages.slots import by_day, free_slot_page
from web.patient_pages.texts import TOP_ERRORS

SCOPES = ("upcoming", "past", "cancelled")


async def _physicians(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Physician]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {p.id: p for p in (await session.scalars(select(Physician).where(Physician.id.in_(wanted)))).all()}


async def consultations_page(request: web.Request) -> web.Response:
    """Upcoming, past and cancelled consultations, one tab each (`?scope=`)."""
    principal = await page_user(request, roles=PATIENTS)
    scope = request.query.get("scope", "upcoming")
    scope = scope if scope in SCOPES else "upcoming"
    viewer = await viewer_for(request, principal)
    async with read(request) as session:
        items = await queries.listing(session, viewer=viewer, scope=scope, now=utcnow(), limit=200)
        physicians = await _physicians(session, (item.consultation.physician_id for item in items))
    return await render_page(request, "consultations.html", {"scope": scope, "scopes": SCOPES, "items": items,
                                                             "physicians": physicians})


@dataclass(frozen=True)
class AnswerRow:
    question: Any  # screening.Question
    value: Any


def answer_rows(definition: dict[str, Any] | None, answers: dict[str, Any] | None) -> list[AnswerRow]:
    """The questions that were answered, in the questionnaire's order, with the answers."""
    if not definition or not answers:
        return []
    parsed = QuestionnaireDefinition.model_validate(definition)
    return [AnswerRow(question, answers[question.id]) for question in parsed.questions if question.id in answers]


async def _detail(request: web.Request, principal: Principal, consultation_id: uuid.UUID, *,
                  error: str | None = None, status: int = 200) -> web.Response:
    viewer = await viewer_for(request, principal)
    settings = request.app[keys.settings]
    now = utcnow()
    async with read(request) as session:
        try:
            consultation = await services.load(session, consultation_id, viewer)
        except NotFound:
            raise await not_found(request) from None
        view = await queries.view(session, consultation.id)
        physician = await session.get(Physician, consultation.physician_id)
        screening = await session.get(Questionnaire, consultation.questionnaire_id)
        checkin = await session.get(Questionnaire, consultation.checkin_questionnaire_id) \
            if consultation.checkin_questionnaire_id else None
    assert physician is not None  # noqa: S101  # a foreign key
    limits = services.Windows.from_settings(settings)
    live = consultation.status in (ConsultationStatus.scheduled, ConsultationStatus.waiting,
                                   ConsultationStatus.in_call)
    return await render_page(request, "consultation.html", {
        "view": view, "c": consultation, "physician": physician, "error": error,
        "screening": answer_rows(screening.definition if screening else None, consultation.screening_answers),
        "checkin": answer_rows(checkin.definition if checkin else None, consultation.checkin_answers),
        "may_change": consultation.status is ConsultationStatus.scheduled
        and rules.may_change_booking(consultation.starts_at, now=now, cutoff=limits.cutoff),
        "too_late": consultation.status is ConsultationStatus.scheduled
        and not rules.may_change_booking(consultation.starts_at, now=now, cutoff=limits.cutoff),
        "checkin_open": live and (consultation.status is not ConsultationStatus.scheduled or rules.checkin_open(
            consultation.starts_at, now=now, opens_before=limits.checkin_opens, grace=limits.no_show_grace)),
        "checkin_opens": consultation.starts_at - limits.checkin_opens,
        "opens_minutes": settings.checkin_opens_minutes,
        "notice": next((name for name in ("booked", "moved", "cancelled") if request.query.get(name) == "1"), None),
    }, status=status)


async def consultation_page(request: web.Request) -> web.Response:
    """One consultation: its state, the answers given, and what the patient may still do with it."""
    principal, consultation_id = await patient_and_consultation_id(request)
    return await _detail(request, principal, consultation_id)


async def cancel_submit(request: web.Request) -> web.Response:
    """Cancel, then back to the consultation with a notice; a refusal shows the consultation with its reason."""
    principal, consultation_id = await patient_and_consultation_id(request)
    await read_form(request, back=f"/my/consultations/{consultation_id}")
    viewer = await viewer_for(request, principal)
    try:
        async with tx(request) as session:
            consultation = await services.cancel(session, consultation_id=consultation_id, viewer=viewer,
                                                 ctx=audit_context(request), now=utcnow(),
                                                 windows=services.Windows.from_settings(request.app[keys.settings]))
            physician_id = consultation.physician_id
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        return await _detail(request, principal, consultation_id, error=problem_code(problem), status=problem.status)
    publish_to_physician(request, physician_id, "cancel", consultation_id)
    raise web.HTTPSeeOther(f"/my/consultations/{consultation_id}?cancelled=1")


async def _reschedule_form(request: web.Request, principal: Principal, consultation_id: uuid.UUID | None, *,
                           error: str | None = None, chosen: str = "", status: int = 200) -> web.Response:
    query = request.query
    now = utcnow()
    async with read(request) as session:
        consultation = await load_own(session, request, principal, consultation_id)
        view = await queries.view(session, consultation.id)
        physician = await session.get(Physician, consultation.physician_id)
        date_from = parse_date(query.get("date_from"))
        slots, more = await free_slot_page(session, request, physician_id=consultation.physician_id,
                                           date_from=date_from, after=parse_instant(query.get("after")))
    limits = services.Windows.from_settings(request.app[keys.settings])
    movable = consultation.status is ConsultationStatus.scheduled
    here = f"/my/consultations/{consultation.id}/reschedule"
    return await render_page(request, "reschedule.html", {
        "view": view, "c": consultation, "physician": physician, "error": error, "chosen": chosen,
        "movable": movable,
        "too_late": movable and not rules.may_change_booking(consultation.starts_at, now=now, cutoff=limits.cutoff),
        "days": by_day(slots), "date_from": date_from, "today": now.date(),
        "more": link(here, date_from=date_from, after=iso(slots[-1].starts_at)) if more and slots else None,
    }, status=status)


async def reschedule_page(request: web.Request) -> web.Response:
    """Free times of the same physician to move the consultation to."""
    principal = await page_user(request, roles=PATIENTS)
    return await _reschedule_form(request, principal, consultation_id_of(request))


async def reschedule_submit(request: web.Request) -> web.Response:
    """Move to the chosen time; a refusal shows the times again with the choice kept and the reason on top."""
    principal, consultation_id = await patient_and_consultation_id(request)
    form = await read_form(request, back=f"/my/consultations/{consultation_id}/reschedule")
    starts_at = parse_instant(form.get("starts_at"))
    if starts_at is None:
        return await _reschedule_form(request, principal, consultation_id, error="choose_time", status=422)
    viewer = await viewer_for(request, principal)
    try:
        async with tx(request) as session:
            consultation = await services.reschedule(session, consultation_id=consultation_id, starts_at=starts_at,
                                                     viewer=viewer, ctx=audit_context(request), now=utcnow(),
                                                     windows=services.Windows.from_settings(request.app[keys.settings]))
            physician_id = consultation.physician_id
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        code = problem_code(problem)
        return await _reschedule_form(request, principal, consultation_id, error=code if code in TOP_ERRORS
                                      else "error", chosen=form.get("starts_at", ""), status=problem.status)
    publish_to_physician(request, physician_id, "reschedule", consultation_id)
    raise web.HTTPSeeOther(f"/my/consultations/{consultation_id}?moved=1")
