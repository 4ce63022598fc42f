"""Patients' pages: finding a slot, screening, booking, my consultations, the waiting room.

Thin handlers over the scheduling services, like the API's. Every refusal of the domain (a `ProblemError`)
comes back as the same form, with a plain message next to the field or at the top; a screening stop comes
back as the emergency page or the in-person page (422), never as a problem document. Each step of booking
is a GET with query parameters, so it can be bookmarked and works without scripts.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from babel.dates import format_date, format_time, get_timezone_location
from babel.numbers import format_decimal
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from server.notify.messages import format_when
from server.people import services as people
from server.people.models import Physician
from server.scheduling import availability, conditions, queries, rules, services
from server.scheduling.api import EMERGENCY, viewer_for, windows
from server.scheduling.availability import FreeSlot
from server.scheduling.models import ConditionVersion, Consultation, ConsultationKind, ConsultationStatus, Questionnaire
from server.scheduling.screening import QuestionnaireDefinition, Rule, Text
from web.i18n import N_
from web.pages import PageAnswer, page_handler, page_user, read_form, render

PATIENTS = frozenset({Role.patient})
SLOTS_PER_PAGE = 30
SCOPES = ("upcoming", "past", "cancelled")
KINDS = ("primary", "repeat")

STATUS_TEXT = {
    ConsultationStatus.scheduled: N_("Coming up"),
    ConsultationStatus.waiting: N_("You are in the waiting room"),
    ConsultationStatus.in_call: N_("In progress"),
    ConsultationStatus.completed: N_("Took place"),
    ConsultationStatus.documented: N_("Took place; the physician's report is ready"),
    ConsultationStatus.cancelled: N_("Cancelled (will not take place)"),
    ConsultationStatus.no_show: N_("Missed"),
    ConsultationStatus.refused: N_("Not held: urgent care was needed"),
    ConsultationStatus.interrupted: N_("Interrupted by a connection problem"),
}
KIND_TEXT = {"primary": N_("Primary consultation"), "repeat": N_("Repeat consultation")}
KIND_HINT = {
    "primary": N_("A new complaint. The physician asks about it and advises you, but cannot make a diagnosis or "
                  "prescribe medicines online."),
    "repeat": N_("For a condition already diagnosed at this clinic. The physician can adjust your treatment and "
                 "prescribe."),
}
SPECIALTY_TEXT = {
    "general_practice": N_("General practice"),
    "therapy": N_("General practice"),
    "cardiology": N_("Cardiology"),
    "paediatrics": N_("Paediatrics"),
    "pediatrics": N_("Paediatrics"),
    "dermatology": N_("Dermatology"),
    "endocrinology": N_("Endocrinology"),
    "gastroenterology": N_("Gastroenterology"),
    "neurology": N_("Neurology"),
    "pulmonology": N_("Pulmonology"),
    "urology": N_("Urology"),
    "gynaecology": N_("Gynaecology"),
    "gynecology": N_("Gynaecology"),
    "otolaryngology": N_("Ear, nose and throat"),
}
# The catalogue's groups (by the questionnaire a condition uses) in the order patients look for them.
GROUP_ORDER = ("respiratory", "child_fever", "skin", "urogenital", "digestive", "cardiovascular", "diabetes",
               "chronic_respiratory", "neuro_followup", "general")

# What the booking form says for each refusal of the domain (by problem code), and where.
TOP_ERRORS = {
    "slot_taken": N_("Someone has just booked this time. Please choose another time."),
    "slot_unavailable": N_("The physician no longer offers this time. Please choose another time."),
    "overlapping_consultation": N_("You already have a consultation at this time. Please choose another time."),
    "unknown_condition": N_("This reason is no longer in our list. Please choose the reason again."),
    "unknown_questionnaire": N_("This reason is no longer in our list. Please choose the reason again."),
    "not_found": N_("This physician is not receiving patients now. Please choose another time."),
    "too_late_to_change": N_("It is too late to change this consultation online. Please call the clinic."),
    "illegal_transition": N_("This consultation can no longer be changed."),
    "checkin_closed": N_("The waiting room is not open for this consultation now."),
    "choose_time": N_("Please choose a time."),
    "error": N_("Something went wrong. Please try again."),
}
KIND_ERRORS = {
    "no_prior_diagnosis": N_("A repeat consultation is only for a condition already diagnosed at this clinic, and we "
                             "have no such diagnosis for you. Please choose a primary consultation."),
    "primary_not_allowed": N_("For this condition only a repeat consultation is possible, after a diagnosis at "
                              "this clinic."),
    "repeat_not_allowed": N_("For this condition only a primary consultation is possible."),
}
# Problem codes after which the patient should simply pick another time.
SLOT_CODES = frozenset({"slot_taken", "slot_unavailable", "overlapping_consultation", "not_found"})
TAG = re.compile(r"^[a-z0-9_]{1,40}$")  # a problem code, or a device-check problem from patient.js
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Message = tuple[str, dict[str, Any]]  # a msgid and its named parameters; translated where it is shown


# --- formatting for the templates --------------------------------------------------------------------------------


def _zone(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(instant: dt.datetime, time_zone: str, locale: str) -> str:
    """"пятница, 12 марта 2027 г., 14:20 (Москва, UTC+3)": the physician's wall clock and its zone."""
    return format_when(instant, locale=locale, time_zone=_zone(time_zone).key)


def day_label(day: dt.date, locale: str) -> str:
    return format_date(day, "full", locale=locale)


def clock(instant: dt.datetime, time_zone: str, locale: str) -> str:
    """"14:20 (Москва, UTC+3)": a slot's time under its day's heading."""
    zone = _zone(time_zone)
    local = instant.astimezone(zone)
    return f"{format_time(local, 'short', locale=locale)} ({_zone_label(zone, local, locale)})".replace("\u202f", " ")


def _zone_label(zone: ZoneInfo, local: dt.datetime, locale: str) -> str:
    minutes = int((local.utcoffset() or dt.timedelta(0)).total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    utc = "UTC" if minutes == 0 else f"UTC{'+' if minutes > 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")
    if "/" not in zone.key or zone.key.startswith("Etc/"):
        return utc
    city = get_timezone_location(zone, locale=locale, return_city=True)
    return f"{city.rsplit('/', 1)[-1].replace('_', ' ')}, {utc}"


def number(value: float, locale: str) -> str:
    return format_decimal(value, locale=locale)


def specialty_text(code: str) -> str:
    """The msgid for a known specialty code (translate it where shown), else the code in words."""
    return SPECIALTY_TEXT.get(code, code.replace("_", " "))


def _plain(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def iso(instant: dt.datetime) -> str:
    """A slot's start as it travels in links and forms: UTC, to the second, with a `Z`."""
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def link(path: str, **params: object) -> str:
    """`path` with the query parameters that have a value, encoded (a `+` in an offset stays a `+`)."""
    kept = {name: str(value) for name, value in params.items() if value not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


async def _page(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    return await render(request, f"patient/{template}", {**HELPERS, **context}, status=status)


async def _not_found(request: web.Request) -> PageAnswer:
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": "/my/consultations"},
                                   status=404))


# --- reading what was sent ---------------------------------------------------------------------------------------


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value or "")
    except ValueError:
        return None


def _instant(value: str | None) -> dt.datetime | None:
    """An aware time from a link or form; a `+` that arrived unencoded reads as a space, so take it back."""
    text = (value or "").strip().replace(" ", "+")
    if not text or len(text) > 40:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return parsed.astimezone(dt.UTC)


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def _text(value: str, *, limit: int = 20000) -> str:
    """Typed text without control characters (PostgreSQL refuses NUL), one kind of line break."""
    return CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))[:limit].strip()


def _consultation_id(request: web.Request) -> uuid.UUID | None:
    return _uuid(request.match_info["consultation_id"])


@dataclass
class Answers:
    """A questionnaire form read back: clean values for the service, what was typed, and what is wrong."""

    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    errors: dict[str, Message] = field(default_factory=dict)


def read_answers(definition: QuestionnaireDefinition, form: Mapping[str, str]) -> Answers:
    """Each question's field (`answers.<id>`), checked as the domain will check it, so every problem shows at once."""
    found = Answers()
    for question in definition.questions:
        raw = _text(form.get(f"answers.{question.id}", ""), limit=50)
        found.raw[question.id] = raw
        if not raw:
            if question.required:
                found.errors[question.id] = (N_("Please answer this question."), {})
            continue
        if question.type == "yes_no":
            if raw not in ("yes", "no"):
                found.errors[question.id] = (N_("Please answer yes or no."), {})
                continue
            found.values[question.id] = raw == "yes"
        elif question.type == "number":
            try:
                value = float(raw.replace(",", ".").replace(" ", ""))
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                found.errors[question.id] = (N_("Please enter a number, using digits."), {})
                continue
            if (question.min is not None and value < question.min) or (
                    question.max is not None and value > question.max):
                found.errors[question.id] = (N_("Please enter a number from %(min)s to %(max)s."),
                                             {"min": _plain(question.min), "max": _plain(question.max)})
                continue
            found.values[question.id] = int(value) if value.is_integer() else value
        else:
            if raw not in {choice.id for choice in question.choices}:
                found.errors[question.id] = (N_("Please choose one of the answers."), {})
                continue
            found.values[question.id] = raw
    return found


def _answer_errors(problem: ProblemError) -> dict[str, Message]:
    """The domain's verdict on single answers (`answers.<id>`), should it differ from the form's own check."""
    return {error.field.removeprefix("answers."): (N_("Please check this answer."), {})
            for error in problem.errors or [] if error.field.startswith("answers.")}


def _problem_code(problem: ProblemError) -> str:
    return problem.code if TAG.match(problem.code) else "error"


def _publish(request: web.Request, physician_id: uuid.UUID, event: str, consultation_id: uuid.UUID) -> None:
    """Tell the physician's open waiting-room pages, as the API does (ids and events only)."""
    request.app[keys.waiting_room].publish(physician_id, {"event": event, "consultation_id": str(consultation_id)})


# --- step 1: the reason, then a time ---------------------------------------------------------------------------


def kinds_of(condition: ConditionVersion) -> list[str]:
    return [kind for kind, allowed in zip(KINDS, (condition.allows_primary, condition.allows_repeat), strict=True)
            if allowed]


@dataclass(frozen=True)
class ConditionGroup:
    code: str
    title: Text  # the group's name in both languages
    conditions: list[ConditionVersion]


async def _catalogue(session: AsyncSession) -> list[ConditionGroup]:
    """The bookable conditions, grouped by the questionnaire they share (its title names the group)."""
    found = await conditions.current_conditions(session)
    titles = {q.code: QuestionnaireDefinition.model_validate(q.definition).title
              for q in (await session.scalars(select(Questionnaire).where(Questionnaire.is_current.is_(True)))).all()}
    groups: dict[str, list[ConditionVersion]] = {}
    for condition in found:
        if condition.questionnaire_code in titles:
            groups.setdefault(condition.questionnaire_code, []).append(condition)
    order = {code: index for index, code in enumerate(GROUP_ORDER)}
    return [ConditionGroup(code, titles[code], members)
            for code, members in sorted(groups.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))]


def search_text(group: ConditionGroup, condition: ConditionVersion) -> str:
    """What a search matches: the names in both languages, the ICD-10 code, and the group's title, so that a
    symptom ("кашель", "rash") finds the conditions of its group."""
    return " ".join(text for text in (condition.name_ru, condition.name_en, condition.icd10 or "", group.title.ru,
                                      group.title.en) if text)


def _matches(text: str, search: str) -> bool:
    return search.casefold().replace("ё", "е") in text.casefold().replace("ё", "е")


def _by_day(slots: Iterable[FreeSlot]) -> list[tuple[dt.date, list[FreeSlot]]]:
    """Slots under their date on the physician's wall clock, in time order."""
    days: dict[dt.date, list[FreeSlot]] = {}
    for slot in slots:
        days.setdefault(slot.starts_at.astimezone(_zone(slot.time_zone)).date(), []).append(slot)
    return list(days.items())


async def _slots(session: AsyncSession, request: web.Request, *, physician_id: uuid.UUID | None = None,
                 specialty: str | None = None, date_from: dt.date | None = None, date_to: dt.date | None = None,
                 after: dt.datetime | None = None) -> tuple[list[FreeSlot], bool]:
    """One page of free slots (those after `after`, for "later times") and whether more follow."""
    settings = request.app[keys.settings]
    if after is not None:
        date_from = max(date_from, after.date()) if date_from else after.date()
    found = await availability.free_slots(session, now=utcnow(), weeks=settings.booking_weeks_ahead,
                                          physician_id=physician_id, specialty=specialty, date_from=date_from,
                                          date_to=date_to, limit=100_000 if after else SLOTS_PER_PAGE + 1)
    if after is not None:
        found = [slot for slot in found if slot.starts_at > after]
    return found[:SLOTS_PER_PAGE], len(found) > SLOTS_PER_PAGE


async def book_page(request: web.Request) -> web.Response:
    """Step 1: the reason (from the catalogue); then the kind, a physician or specialty, dates, and a time."""
    await page_user(request, roles=PATIENTS)
    query = request.query
    search = _text(query.get("q", ""), limit=100)
    async with read(request) as session:
        groups = await _catalogue(session)
        chosen = next((c for group in groups for c in group.conditions if c.code == query.get("condition")), None)
        if chosen is None:
            shown = [ConditionGroup(g.code, g.title, [c for c in g.conditions if _matches(search_text(g, c), search)])
                     for g in groups] if search else groups
            return await _page(request, "book.html", {
                "step": "reason", "groups": [g for g in shown if g.conditions], "search": search,
                "unknown": bool(query.get("condition"))})
        physicians = await people.list_physicians(session)
        kinds = kinds_of(chosen)
        kind = query.get("kind") if query.get("kind") in kinds else kinds[0]
        physician_id = _uuid(query.get("physician_id"))
        if physician_id not in {physician.id for physician, _ in physicians}:
            physician_id = None
        specialties = sorted({physician.specialty for physician, _ in physicians})
        specialty = query.get("specialty") if query.get("specialty") in specialties else None
        date_from, date_to = _date(query.get("date_from")), _date(query.get("date_to"))
        dates_error = date_from is not None and date_to is not None and date_to < date_from
        slots, more = await _slots(session, request, physician_id=physician_id, specialty=specialty,
                                   date_from=date_from, date_to=None if dates_error else date_to,
                                   after=_instant(query.get("after")))
    filters = {"condition": chosen.code, "kind": kind, "physician_id": physician_id, "specialty": specialty,
               "date_from": date_from, "date_to": date_to}
    return await _page(request, "book.html", {
        "step": "time", "condition": chosen, "kinds": kinds, "kind": kind, "physicians": physicians,
        "specialties": specialties, "filters": filters, "dates_error": dates_error, "days": _by_day(slots),
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
    physician_id, starts_at = _uuid(params.get("physician_id")), _instant(params.get("starts_at"))
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
    day = choice.starts_at.date()
    found = await availability.free_slots(session, now=utcnow(), weeks=request.app[keys.settings].booking_weeks_ahead,
                                          physician_id=choice.physician.id, date_from=day, date_to=day, limit=1000)
    return any(slot.starts_at == choice.starts_at for slot in found)


async def _screening_form(request: web.Request, choice: Choice, *, answers: Answers | None = None,
                          complaint: str = "", top_error: str | None = None, kind_error: str | None = None,
                          complaint_error: Message | None = None, status: int = 200) -> web.Response:
    settings = request.app[keys.settings]
    return await _page(request, "screening.html", {
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
        return await _page(request, "screening.html", {"choice": choice, "slot_gone": True,
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
    complaint = _text(form.get("complaint", ""))
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
                ctx=audit_context(request), now=utcnow(), windows=windows(settings))
    except ProblemError as problem:
        code = _problem_code(problem)
        if code in KIND_ERRORS:
            return await _screening_form(request, choice, answers=answers, complaint=complaint, kind_error=code,
                                         status=problem.status)
        answers.errors.update(_answer_errors(problem))
        if answers.errors:
            return await _screening_form(request, choice, answers=answers, complaint=complaint,
                                         status=problem.status)
        return await _screening_form(request, choice, answers=answers, complaint=complaint,
                                     top_error=code if code in TOP_ERRORS else "error", status=problem.status)
    if isinstance(result, services.ScreeningRefusal):
        return await _refusal_page(request, result, stage="booking", back=choice.back)
    raise web.HTTPSeeOther(f"/my/consultations/{result.id}?booked=1")


async def _refusal_page(request: web.Request, refusal: services.ScreeningRefusal, *, stage: str,
                        back: str) -> web.Response:
    """The emergency page for a red flag, else the recommendation to come in person; both 422."""
    rules_hit: list[Rule] = list(refusal.rules)  # red flags first; each says what to do, in both languages
    template = "emergency.html" if refusal.red_flag else "in_person.html"
    return await _page(request, template, {"rules": rules_hit, "stage": stage, "back": back}, status=422)


# --- my consultations --------------------------------------------------------------------------------------------


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
    return await _page(request, "consultations.html", {"scope": scope, "scopes": SCOPES, "items": items,
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
            raise await _not_found(request) from None
        view = await queries.view(session, consultation.id)
        physician = await session.get(Physician, consultation.physician_id)
        screening = await session.get(Questionnaire, consultation.questionnaire_id)
        checkin = await session.get(Questionnaire, consultation.checkin_questionnaire_id) \
            if consultation.checkin_questionnaire_id else None
    assert physician is not None  # noqa: S101  # a foreign key
    limits = windows(settings)
    live = consultation.status in (ConsultationStatus.scheduled, ConsultationStatus.waiting,
                                   ConsultationStatus.in_call)
    return await _page(request, "consultation.html", {
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
    principal = await page_user(request, roles=PATIENTS)
    consultation_id = _consultation_id(request)
    if consultation_id is None:
        raise await _not_found(request)
    return await _detail(request, principal, consultation_id)


async def cancel_submit(request: web.Request) -> web.Response:
    principal = await page_user(request, roles=PATIENTS)
    consultation_id = _consultation_id(request)
    if consultation_id is None:
        raise await _not_found(request)
    await read_form(request, back=f"/my/consultations/{consultation_id}")
    viewer = await viewer_for(request, principal)
    try:
        async with tx(request) as session:
            consultation = await services.cancel(session, consultation_id=consultation_id, viewer=viewer,
                                                 ctx=audit_context(request), now=utcnow(),
                                                 windows=windows(request.app[keys.settings]))
            physician_id = consultation.physician_id
    except NotFound:
        raise await _not_found(request) from None
    except ProblemError as problem:
        return await _detail(request, principal, consultation_id, error=_problem_code(problem), status=problem.status)
    _publish(request, physician_id, "cancel", consultation_id)
    raise web.HTTPSeeOther(f"/my/consultations/{consultation_id}?cancelled=1")


async def _own(session: AsyncSession, request: web.Request, principal: Principal,
               consultation_id: uuid.UUID | None) -> Consultation:
    if consultation_id is None:
        raise await _not_found(request)
    try:
        return await services.load(session, consultation_id, await viewer_for(request, principal))
    except NotFound:
        raise await _not_found(request) from None


async def _reschedule_form(request: web.Request, principal: Principal, consultation_id: uuid.UUID | None, *,
                           error: str | None = None, chosen: str = "", status: int = 200) -> web.Response:
    query = request.query
    now = utcnow()
    async with read(request) as session:
        consultation = await _own(session, request, principal, consultation_id)
        view = await queries.view(session, consultation.id)
        physician = await session.get(Physician, consultation.physician_id)
        date_from = _date(query.get("date_from"))
        slots, more = await _slots(session, request, physician_id=consultation.physician_id, date_from=date_from,
                                   after=_instant(query.get("after")))
    limits = windows(request.app[keys.settings])
    movable = consultation.status is ConsultationStatus.scheduled
    here = f"/my/consultations/{consultation.id}/reschedule"
    return await _page(request, "reschedule.html", {
        "view": view, "c": consultation, "physician": physician, "error": error, "chosen": chosen,
        "movable": movable,
        "too_late": movable and not rules.may_change_booking(consultation.starts_at, now=now, cutoff=limits.cutoff),
        "days": _by_day(slots), "date_from": date_from, "today": now.date(),
        "more": link(here, date_from=date_from, after=iso(slots[-1].starts_at)) if more and slots else None,
    }, status=status)


async def reschedule_page(request: web.Request) -> web.Response:
    """Free times of the same physician to move the consultation to."""
    principal = await page_user(request, roles=PATIENTS)
    return await _reschedule_form(request, principal, _consultation_id(request))


async def reschedule_submit(request: web.Request) -> web.Response:
    principal = await page_user(request, roles=PATIENTS)
    consultation_id = _consultation_id(request)
    if consultation_id is None:
        raise await _not_found(request)
    form = await read_form(request, back=f"/my/consultations/{consultation_id}/reschedule")
    starts_at = _instant(form.get("starts_at"))
    if starts_at is None:
        return await _reschedule_form(request, principal, consultation_id, error="choose_time", status=422)
    viewer = await viewer_for(request, principal)
    try:
        async with tx(request) as session:
            consultation = await services.reschedule(session, consultation_id=consultation_id, starts_at=starts_at,
                                                     viewer=viewer, ctx=audit_context(request), now=utcnow(),
                                                     windows=windows(request.app[keys.settings]))
            physician_id = consultation.physician_id
    except NotFound:
        raise await _not_found(request) from None
    except ProblemError as problem:
        code = _problem_code(problem)
        return await _reschedule_form(request, principal, consultation_id, error=code if code in TOP_ERRORS
                                      else "error", chosen=form.get("starts_at", ""), status=problem.status)
    _publish(request, physician_id, "reschedule", consultation_id)
    raise web.HTTPSeeOther(f"/my/consultations/{consultation_id}?moved=1")


# --- the waiting room ----------------------------------------------------------------------------------------------


async def _checkin_definition(session: AsyncSession) -> QuestionnaireDefinition:
    found = await conditions.current_questionnaire(session, services.CHECKIN_QUESTIONNAIRE)
    return QuestionnaireDefinition.model_validate(found.definition)


async def _waiting_room(request: web.Request, principal: Principal, consultation_id: uuid.UUID | None, *,
                        answers: Answers | None = None, error: str | None = None,
                        status: int = 200) -> web.Response:
    settings = request.app[keys.settings]
    now = utcnow()
    async with read(request) as session:
        consultation = await _own(session, request, principal, consultation_id)
        view = await queries.view(session, consultation.id)
        physician = await session.get(Physician, consultation.physician_id)
        definition = await _checkin_definition(session)
    context: dict[str, Any] = {"view": view, "c": consultation, "physician": physician}
    if consultation.status in (ConsultationStatus.waiting, ConsultationStatus.in_call):
        return await _page(request, "waiting.html", context, status=status)
    if consultation.status is not ConsultationStatus.scheduled:
        raise web.HTTPFound(f"/my/consultations/{consultation.id}") if request.method == "GET" \
            else web.HTTPSeeOther(f"/my/consultations/{consultation.id}")
    limits = windows(settings)
    is_open = rules.checkin_open(consultation.starts_at, now=now, opens_before=limits.checkin_opens,
                                 grace=limits.no_show_grace)
    return await _page(request, "checkin.html", {
        **context, "open": is_open, "definition": definition, "answers": answers or Answers(), "error": error,
        "opens_at": consultation.starts_at - limits.checkin_opens, "opens_minutes": settings.checkin_opens_minutes,
        "too_late": now > consultation.starts_at + limits.no_show_grace}, status=status)


async def waiting_room_page(request: web.Request) -> web.Response:
    """Before check-in: the device check and a few questions; after it: waiting to be let in."""
    principal = await page_user(request, roles=PATIENTS)
    return await _waiting_room(request, principal, _consultation_id(request))


def read_device_check(form: Mapping[str, str]) -> dict[str, Any]:
    """What patient.js found (the same shape as the API's `device_check`); without scripts: nothing, `no_js`."""
    problems = [tag for tag in (part.strip() for part in form.get("problems", "").split(",")) if TAG.match(tag)]
    return {"camera": form.get("camera") == "true", "microphone": form.get("microphone") == "true",
            "speaker": form.get("speaker") == "true", "browser": _text(form.get("browser", ""), limit=200),
            "problems": list(dict.fromkeys(problems))[:10]}


async def check_in_submit(request: web.Request) -> web.Response:
    principal = await page_user(request, roles=PATIENTS)
    consultation_id = _consultation_id(request)
    if consultation_id is None:
        raise await _not_found(request)
    here = f"/my/consultations/{consultation_id}/waiting-room"
    form = await read_form(request, back=here)
    async with read(request) as session:
        consultation = await _own(session, request, principal, consultation_id)
        definition = await _checkin_definition(session)
    answers = read_answers(definition, form)
    if answers.errors and consultation.status is ConsultationStatus.scheduled:
        return await _waiting_room(request, principal, consultation_id, answers=answers, status=422)
    viewer = await viewer_for(request, principal)
    try:
        async with tx(request) as session:
            result = await services.check_in(session, consultation_id=consultation_id, viewer=viewer,
                                             answers=answers.values, device_check=read_device_check(form),
                                             ctx=audit_context(request), now=utcnow(),
                                             windows=windows(request.app[keys.settings]))
    except NotFound:
        raise await _not_found(request) from None
    except ProblemError as problem:
        answers.errors.update(_answer_errors(problem))
        code = _problem_code(problem)
        return await _waiting_room(request, principal, consultation_id, answers=answers,
                                   error=None if answers.errors else code if code in TOP_ERRORS else "error",
                                   status=problem.status)
    refused = isinstance(result, services.ScreeningRefusal)
    _publish(request, consultation.physician_id, "refused" if refused else "checked_in", consultation_id)
    if isinstance(result, services.ScreeningRefusal):
        return await _refusal_page(request, result, stage="checkin", back=f"/my/consultations/{consultation_id}")
    raise web.HTTPSeeOther(here)


# What every patient template may call or look up (besides what `render` adds).
HELPERS: dict[str, Any] = {
    "when": when, "day_label": day_label, "clock": clock, "number": number, "specialty_text": specialty_text,
    "iso": iso, "link": link, "search_text": search_text, "STATUS_TEXT": STATUS_TEXT, "KIND_TEXT": KIND_TEXT,
    "KIND_HINT": KIND_HINT, "EMERGENCY": EMERGENCY, "TOP_ERRORS": TOP_ERRORS, "KIND_ERRORS": KIND_ERRORS,
    "Status": ConsultationStatus,
}


def setup(app: web.Application) -> None:
    """Registers the patient pages."""
    app.router.add_get("/book", page_handler(book_page), name="book")
    app.router.add_post("/book", page_handler(book_submit))
    app.router.add_get("/book/screening", page_handler(screening_page), name="book_screening")
    app.router.add_get("/my/consultations", page_handler(consultations_page), name="my_consultations")
    app.router.add_get("/my/consultations/{consultation_id}", page_handler(consultation_page),
                       name="my_consultation")
    app.router.add_post("/my/consultations/{consultation_id}/cancel", page_handler(cancel_submit))
    app.router.add_get("/my/consultations/{consultation_id}/reschedule", page_handler(reschedule_page),
                       name="my_consultation_reschedule")
    app.router.add_post("/my/consultations/{consultation_id}/reschedule", page_handler(reschedule_submit))
    app.router.add_get("/my/consultations/{consultation_id}/waiting-room", page_handler(waiting_room_page),
                       name="my_waiting_room")
    app.router.add_post("/my/consultations/{consultation_id}/check-in", page_handler(check_in_submit))
