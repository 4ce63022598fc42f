"""Booking: the reason and a time (step 1), then screening and the booking itself (step 2).

Each step is a GET with query parameters, so it can be bookmarked and works without scripts; the choice is checked
again at every step, because a slot, a physician or a condition can go between two clicks. A refusal of the domain
shows the screening form again with a plain message; a screening stop shows the emergency or in-person page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server import keys
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import audit_context
from server.http.problems import ProblemError
from server.people import services as people
from server.people.models import Physician
from server.scheduling import availability, conditions, services
from server.scheduling.models import ConditionVersion, ConsultationKind
from server.scheduling.screening import QuestionnaireDefinition
from web.i18n import N_
from web.pages import page_user, read_form
from web.patient_pages.catalogue import KINDS, ConditionGroup, kinds_of, load_catalogue, matches, search_text
from web.patient_pages.formatting import iso, link
from web.patient_pages.forms import (
    Answers,
    Message,
    answer_errors,
    clean_text,
    parse_date,
    parse_instant,
    parse_uuid,
    problem_code,
    read_answers,
)
from web.patient_pages.rendering import PATIENTS, refusal_page, render_page
from web.patient_pages.slots import by_day, free_slot_page
from web.patient_pages.texts import KIND_ERRORS, TOP_ERRORS

# --- step 1: the reason, then a time ---------------------------------------------------------------------------


async def book_page(request: web.Request) -> web.Response:
    """Step 1: the reason (from the catalogue); then the kind, a physician or specialty, dates, and a time."""
    await page_user(request, roles=PATIENTS)
    query = request.query
    search = clean_text(query.get("q", ""), limit=100)
    async with read(request) as session:
        groups = await load_catalogue(session)
        chosen = next((c for group in groups for c in group.conditions if c.code == query.get("condition")), None)
        if chosen is None:
            shown = [ConditionGroup(g.code, g.title, [c for c in g.conditions if matches(search_text(g, c), search)])
                     for g in groups] if search else groups
            return await render_page(request, "book.html", {
                "step": "reason", "groups": [g for g in shown if g.conditions], "search": search,
                "unknown": bool(query.get("condition"))})
        physicians = await people.list_physicians(session)
        kinds = kinds_of(chosen)
        kind = query.get("kind") if query.get("kind") in kinds else kinds[0]
        physician_id = parse_uuid(query.get("physician_id"))
        if physician_id not in {physician.id for physician, _ in physicians}:
            physician_id = None
        specialties = sorted({physician.specialty for physician, _ in physicians})
        specialty = query.get("specialty") if query.get("specialty") in specialties else None
        date_from, date_to = parse_date(query.get("date_from")), parse_date(query.get("date_to"))
        dates_error = date_from is not None and date_to is not None and date_to < date_from
        slots, more = await free_slot_page(session, request, physician_id=physician_id, specialty=specialty,
                                           date_from=date_from, date_to=None if dates_error else date_to,
                                           after=parse_instant(query.get("after")))
    filters = {"condition": chosen.code, "kind": kind, "physician_id": physician_id, "specialty": specialty,
               "date_from": date_from, "date_to": date_to}
    return await render_page(request, "book.html", {
        "step": "time", "condition": chosen, "kinds": kinds, "kind": kind, "physicians": physicians,
        "specialties": specialties, "filters": filters, "dates_error": dates_error, "days": by_day(slots),
        "more": link("/book", **filters, after=iso(slots[-1].starts_at)) if more and slots else None,
        "today": utcnow().date()})


# --- step 2: screening, and the booking itself -------------------------------------------------------------------


@dataclass
class Choice:
    """What the patient picked in step 1, checked against the catalogue and the physician list."""

    condition: ConditionVersion
    kind: str
    physician: Physician
    physician_name: str
    starts_at: dt.datetime
    definition: QuestionnaireDefinition

    @property
    def back(self) -> str:
        """Step 1 again, for another time, with the same reason and kind."""
        return link("/book", condition=self.condition.code, kind=self.kind)


async def _choice(session: AsyncSession, params: Mapping[str, str]) -> Choice | str:
    """The checked choice, or the step-1 address to send the patient back to when part of it is gone."""
    try:
        condition = await conditions.current_condition(session, params.get("condition", ""))
    except ProblemError:
        return "/book"
    kind = params.get("kind", "")
    physician_id, starts_at = parse_uuid(params.get("physician_id")), parse_instant(params.get("starts_at"))
    back = link("/book", condition=condition.code, kind=kind if kind in kinds_of(condition) else None)
    if kind not in KINDS or physician_id is None or starts_at is None:
        return back
    try:
        physician, account = await availability.physician(session, physician_id)
        questionnaire = await conditions.current_questionnaire(session, condition.questionnaire_code)
    except ProblemError:
        return back
    return Choice(condition, kind, physician, account.full_name, starts_at,
                  QuestionnaireDefinition.model_validate(questionnaire.definition))


async def _still_free(session: AsyncSession, request: web.Request, choice: Choice) -> bool:
    """Whether the chosen time is still offered. The slot search takes the physician's local dates, so the day is
    the physician's (a slot at 00:00 in Moscow falls on the previous day in UTC)."""
    day = choice.starts_at.astimezone(ZoneInfo(choice.physician.time_zone)).date()
    found = await availability.free_slots(session, now=utcnow(), weeks=request.app[keys.settings].booking_weeks_ahead,
                                          physician_id=choice.physician.id, date_from=day, date_to=day, limit=1000)
    return any(slot.starts_at == choice.starts_at for slot in found)


async def _screening_form(request: web.Request, choice: Choice, *, answers: Answers | None = None,
                          complaint: str = "", top_error: str | None = None, kind_error: str | None = None,
                          complaint_error: Message | None = None, status: int = 200) -> web.Response:
    settings = request.app[keys.settings]
    return await render_page(request, "screening.html", {
        "choice": choice, "definition": choice.definition, "answers": answers or Answers(), "complaint": complaint,
        "complaint_max": settings.complaint_max_chars, "top_error": top_error, "kind_error": kind_error,
        "complaint_error": complaint_error, "kinds": kinds_of(choice.condition), "slot_gone": False}, status=status)


async def screening_page(request: web.Request) -> web.Response:
    """Step 2: the condition's questionnaire and the complaint, for the chosen time."""
    await page_user(request, roles=PATIENTS)
    async with read(request) as session:
        choice = await _choice(session, request.query)
        free = isinstance(choice, Choice) and await _still_free(session, request, choice)
    if not isinstance(choice, Choice):
        raise web.HTTPFound(choice)
    if not free:
        return await render_page(request, "screening.html", {"choice": choice, "slot_gone": True,
                                                              "kinds": kinds_of(choice.condition)})
    return await _screening_form(request, choice)


async def book_submit(request: web.Request) -> web.Response:
    """Screen and book; a red flag shows the emergency page, a contraindication the in-person page (422)."""
    principal = await page_user(request, roles=PATIENTS)
    form = await read_form(request, back="/book")
    settings = request.app[keys.settings]
    async with read(request) as session:
        choice = await _choice(session, form)
    if not isinstance(choice, Choice):
        raise web.HTTPSeeOther(choice)
    answers = read_answers(choice.definition, form)
    complaint = clean_text(form.get("complaint", ""))
    complaint_error: Message | None = None
    if len(complaint) > settings.complaint_max_chars:
        complaint_error = (N_("Please shorten the description to %(max)s characters."),
                           {"max": settings.complaint_max_chars})
    kind_error = None if choice.kind in kinds_of(choice.condition) else (
        "primary_not_allowed" if choice.kind == "primary" else "repeat_not_allowed")
    if answers.errors or complaint_error or kind_error:
        return await _screening_form(request, choice, answers=answers, complaint=complaint, kind_error=kind_error,
                                     complaint_error=complaint_error, status=422)
    assert principal.patient_id is not None  # noqa: S101  # a patient account always has its record
    try:
        async with tx(request) as session:
            result = await services.book(
                session, patient_id=principal.patient_id, physician_id=choice.physician.id,
                starts_at=choice.starts_at, condition_code=choice.condition.code,
                kind=ConsultationKind(choice.kind), answers=answers.values, complaint=complaint,
                ctx=audit_context(request), now=utcnow(), windows=services.Windows.from_settings(settings))
    except ProblemError as problem:
        code = problem_code(problem)
        if code in KIND_ERRORS:
            return await _screening_form(request, choice, answers=answers, complaint=complaint, kind_error=code,
                                         status=problem.status)
        answers.errors.update(answer_errors(problem))
        if answers.errors:
            return await _screening_form(request, choice, answers=answers, complaint=complaint,
                                         status=problem.status)
        return await _screening_form(request, choice, answers=answers, complaint=complaint,
                                     top_error=code if code in TOP_ERRORS else "error", status=problem.status)
    if isinstance(result, services.ScreeningRefusal):
        return await refusal_page(request, result, stage="booking", back=choice.back)
    raise web.HTTPSeeOther(f"/my/consultations/{result.id}?booked=1")
