"""Physicians' and admins' pages: schedules, the live waiting room, hours, figures, the catalogue.

Thin like the API: each handler finds who the page is for (`page_user`, the API's access rule), calls the
same scheduling services and renders; a domain refusal re-renders the page with a message saying what
to do. Times are shown in the physician's own time zone, in the page's language.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from babel.dates import format_date, format_time
from babel.numbers import format_decimal, format_percent
from pydantic import ValidationError
from sqlalchemy import select

from server import keys
from server.audit import services as audit
from server.auth.models import Role, User
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from server.people import services as people
from server.people.models import Physician
from server.scheduling import availability, conditions, queries, rules, schemas, services
from server.scheduling.api import viewer_for, windows
from server.scheduling.models import (
    Consultation,
    ConsultationKind,
    ConsultationStatus,
    ExceptionKind,
    Questionnaire,
)
from server.scheduling.screening import ConditionEntry, Question, QuestionnaireDefinition, Text
from web.i18n import N_
from web.pages import PageAnswer, PageHandler, page_handler, page_user, read_form, render

STAFF = (Role.physician, Role.admin)
BLANK_ROWS = 3  # empty weekly-hours rows a page without scripts offers for new ranges
MAX_ROWS = 70  # as many ranges as the API takes
SCHEDULE_LIMIT = 1000  # a week of round-the-clock 10-minute slots fits

STATUS_NAMES = {
    ConsultationStatus.scheduled: N_("Scheduled"), ConsultationStatus.waiting: N_("Waiting"),
    ConsultationStatus.in_call: N_("In the call"), ConsultationStatus.completed: N_("Completed"),
    ConsultationStatus.documented: N_("Documented"), ConsultationStatus.cancelled: N_("Booking cancelled"),
    ConsultationStatus.no_show: N_("Did not come"), ConsultationStatus.refused: N_("Stopped at screening"),
    ConsultationStatus.interrupted: N_("Interrupted"),
}
# What the page says for a domain refusal, by problem code; anything else gets the generic message.
PROBLEM_MESSAGES = {
    "illegal_transition": N_("This cannot be done in the consultation's current status. The page shows it now."),
    "not_found": N_("It no longer exists. The page shows what is there now."),
    "slot_taken": N_("This time has just been booked by someone else. Choose another time."),
    "slot_unavailable": N_("The physician no longer offers this time. Choose another time."),
    "overlapping_consultation": N_("The patient already has a consultation at this time. Choose another time."),
    "too_late_to_change": N_("It is too close to the start to change this booking."),
    "unknown_questionnaire": N_("No screening questionnaire with this code is published."),
}
KIND_NAMES = {ConsultationKind.primary: N_("Primary"), ConsultationKind.repeat: N_("Repeat")}
GENERIC_PROBLEM = N_("The change could not be made. Reload the page and try again.")


def _problem_message(problem: ProblemError) -> str:
    return PROBLEM_MESSAGES.get(problem.code, GENERIC_PROBLEM)


# --- formatting, for the templates (the page's language and the physician's zone come from the context) ----


def _zone(context: Mapping[str, Any]) -> ZoneInfo:
    zone = context.get("zone")
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo("UTC")


@jinja2.pass_context
def _time(context: Mapping[str, Any], value: dt.datetime | None) -> str:
    return "" if value is None else format_time(value, "short", tzinfo=_zone(context), locale=context["locale"])


# A weekday and date (Babel's skeletons pick abbreviations for Russian, so the patterns are spelled out).
DAY_PATTERNS = {"ru": "EEEE, d MMMM", "en": "EEEE, MMMM d"}


@jinja2.pass_context
def _day(context: Mapping[str, Any], value: dt.date | dt.datetime | None, year: bool = False) -> str:
    """«Понедельник, 3 ноября» / "Monday, November 3"; with the year, the locale's full date."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.astimezone(_zone(context)).date()
    locale = context["locale"]
    text = format_date(value, "full" if year else DAY_PATTERNS.get(locale, "full"), locale=locale)
    return text[:1].upper() + text[1:]


@jinja2.pass_context
def _short_date(context: Mapping[str, Any], value: dt.date | None) -> str:
    return "" if value is None else format_date(value, "medium", locale=context["locale"])


@jinja2.pass_context
def _number(context: Mapping[str, Any], value: float | None) -> str:
    return "—" if value is None else format_decimal(value, "#,##0.#", locale=context["locale"])


@jinja2.pass_context
def _percent(context: Mapping[str, Any], value: float | None) -> str:
    return "—" if value is None else format_percent(value, "#,##0.#%", locale=context["locale"])


def _clock(value: dt.time | None) -> str:
    return "" if value is None else value.strftime("%H:%M")


FILTERS: dict[str, Callable[..., str]] = {"staff_time": _time, "staff_day": _day, "staff_date": _short_date,
                                          "staff_number": _number, "staff_percent": _percent,
                                          "staff_clock": _clock}


# --- who the page is for --------------------------------------------------------------------------------------


async def _not_found(request: web.Request) -> PageAnswer:
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": "/"}, status=404))


async def _path_id(request: web.Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise await _not_found(request) from None


@dataclass(frozen=True)
class Desk:
    """A physician at work: who is signed in, as scheduling sees them, and their own record."""

    principal: Principal
    viewer: services.Viewer
    physician: Physician

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.physician.time_zone)


async def _desk(request: web.Request) -> Desk:
    """The signed-in physician (anyone else: login, second factor or a 404 page, as `page_user` decides)."""
    principal = await page_user(request, roles=[Role.physician])
    viewer = await viewer_for(request, principal)
    if viewer.physician_id is None:
        raise await _not_found(request)
    async with read(request) as db:
        physician = await db.get(Physician, viewer.physician_id)
    if physician is None:
        raise await _not_found(request)
    return Desk(principal, viewer, physician)


@dataclass(frozen=True)
class Target:
    """The physician whose hours or figures a page shows: one's own, or any for an admin."""

    principal: Principal
    physician: Physician
    account: User
    base: str  # where this physician's pages live: /clinic or /clinic/physicians/{id}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.physician.time_zone)

    @property
    def own(self) -> bool:
        return self.principal.role is Role.physician


async def _target(request: web.Request) -> Target:
    if "physician_id" in request.match_info:
        principal = await page_user(request, roles=[Role.admin])
        physician_id = await _path_id(request, "physician_id")
        base = f"/clinic/physicians/{physician_id}"
    else:
        principal = await page_user(request, roles=[Role.physician])
        found = (await viewer_for(request, principal)).physician_id
        if found is None:
            raise await _not_found(request)
        physician_id, base = found, "/clinic"
    try:
        async with read(request) as db:
            physician, account = await availability.physician(db, physician_id)
    except NotFound:
        raise await _not_found(request) from None
    return Target(principal, physician, account, base)


def _today(zone: ZoneInfo) -> dt.date:
    return utcnow().astimezone(zone).date()


def _date(text: str | None) -> dt.date | None:
    """A date from the query, or None (then the page shows today); far-off years are refused too."""
    try:
        found = dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None
    return found if found is not None and 2000 <= found.year <= 2999 else None


def _weeks(request: web.Request) -> int:
    return request.app[keys.settings].booking_weeks_ahead


# --- the day's and the week's schedule --------------------------------------------------------------------


async def schedule_page(request: web.Request) -> web.Response:
    desk = await _desk(request)
    today = _today(desk.zone)
    week = _date(request.query.get("week"))
    if week is not None:
        first, days = week - dt.timedelta(days=week.weekday()), 7
    else:
        first, days = _date(request.query.get("day")) or today, 1
    last = first + dt.timedelta(days=days - 1)
    by_day: dict[dt.date, list[queries.ConsultationView]] = {first + dt.timedelta(days=i): [] for i in range(days)}
    async with read(request) as db:  # UTC dates one wider than the local ones, then sorted by local date
        found = await queries.listing(db, viewer=desk.viewer, scope="all", now=utcnow(),
                                      date_from=first - dt.timedelta(days=1), date_to=last + dt.timedelta(days=1),
                                      limit=SCHEDULE_LIMIT)
    for item in found:
        local_day = item.consultation.starts_at.astimezone(desk.zone).date()
        if local_day in by_day:
            by_day[local_day].append(item)
    step = dt.timedelta(days=days)
    return await render(request, "staff/schedule.html", {
        "zone": desk.zone, "time_zone": desk.physician.time_zone, "days": by_day, "week": week is not None,
        "first": first, "last": last, "today": today, "previous": first - step, "next": first + step})


# --- one consultation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One screening answer as the physician reads it: the question's text, not its id."""

    key: str
    value: Any
    question: Question | None
    choice: Text | None


def _answers(definition: Mapping[str, Any] | None, answers: Mapping[str, Any] | None) -> list[Answer]:
    if not answers:
        return []
    questions: dict[str, Question] = {}
    if definition:
        questions = {q.id: q for q in QuestionnaireDefinition.model_validate(definition).questions}
    shown = [key for key in questions if key in answers] + [key for key in answers if key not in questions]
    found = []
    for key in shown:
        question, value = questions.get(key), answers[key]
        choice = next((c.text for c in question.choices if c.id == value), None) if question else None
        found.append(Answer(key, value, question, choice))
    return found


async def _consultation_response(request: web.Request, *, error: str | None = None,
                                 status: int = 200) -> web.Response:
    """The detail a physician needs in a short slot; every opening is in the audit log, as through the API."""
    principal = await page_user(request, roles=STAFF)
    viewer = await viewer_for(request, principal)
    consultation_id = await _path_id(request, "consultation_id")
    try:
        async with tx(request) as db:
            consultation = await services.load(db, consultation_id, viewer)
            await audit.record(db, ctx=audit_context(request), action="consultation.read",
                               object_type="consultation", object_id=consultation.id,
                               subject_patient_id=consultation.patient_id, now=utcnow())
            item = await queries.view(db, consultation.id)
            physician = await db.get(Physician, consultation.physician_id)
            screening = await db.get(Questionnaire, consultation.questionnaire_id)
            checkin = (await db.get(Questionnaire, consultation.checkin_questionnaire_id)
                       if consultation.checkin_questionnaire_id else None)
            slots = []
            if consultation.status is ConsultationStatus.scheduled:
                slots = await availability.free_slots(db, now=utcnow(), weeks=_weeks(request),
                                                      physician_id=consultation.physician_id, limit=60)
    except NotFound:
        raise await _not_found(request) from None
    zone = ZoneInfo(physician.time_zone if physician else "UTC")
    allowed = rules.TRANSITIONS[consultation.status]  # the buttons offered are the state machine's next steps
    is_physician = principal.role is Role.physician
    return await render(request, "staff/consultation.html", {
        "item": item, "c": consultation, "zone": zone, "time_zone": zone.key,
        "screening": _answers(screening.definition if screening else None, consultation.screening_answers),
        "screening_title": screening.definition.get("title") if screening else None,
        "screening_version": screening.version if screening else None,
        "checkin": _answers(checkin.definition if checkin else None, consultation.checkin_answers),
        "device": consultation.device_check, "slots": slots, "error": error,
        "may_admit": is_physician and consultation.status is ConsultationStatus.waiting,
        "may_finish": is_physician and ConsultationStatus.completed in allowed,
        "may_cancel": ConsultationStatus.cancelled in allowed,
        "back": "/clinic/schedule?day=" + consultation.starts_at.astimezone(zone).date().isoformat()
        if is_physician else "/clinic/schedules"}, status=status)


async def consultation_page(request: web.Request) -> web.Response:
    return await _consultation_response(request)


def _publish(request: web.Request, consultation: Consultation, event: str) -> None:
    """Tell the physician's open waiting-room pages, as the API does after the same change."""
    request.app[keys.waiting_room].publish(consultation.physician_id,
                                           {"event": event, "consultation_id": str(consultation.id)})


async def _change(request: web.Request, change: str, *, roles: tuple[Role, ...] = STAFF) -> str:
    """Run one of the scheduling services on the consultation in the path; where to go next.

    A refusal re-renders the page the form was on (the waiting room or the consultation) saying why.
    """
    principal = await page_user(request, roles=roles)
    consultation_id = await _path_id(request, "consultation_id")
    form = await read_form(request, back=f"/clinic/consultations/{consultation_id}")
    viewer = await viewer_for(request, principal)
    from_queue = form.get("from") == "queue" and principal.role is Role.physician
    arguments: dict[str, Any] = {}
    if change == "reschedule":
        starts_at = _instant(form.get("starts_at", ""))
        if starts_at is None:
            raise PageAnswer(await _consultation_response(request, error=N_("Choose the new time."), status=422))
        arguments["starts_at"] = starts_at
    if change in ("cancel", "reschedule"):
        arguments["windows"] = windows(request.app[keys.settings])
    operation = getattr(services, change)
    try:
        async with tx(request) as db:
            consultation: Consultation = await operation(db, consultation_id=consultation_id, viewer=viewer,
                                                         ctx=audit_context(request), now=utcnow(), **arguments)
    except NotFound:
        raise await _not_found(request) from None
    except ProblemError as problem:
        message = _problem_message(problem)
        if from_queue:
            raise PageAnswer(await _queue_response(request, error=message, status=problem.status)) from None
        raise PageAnswer(await _consultation_response(request, error=message, status=problem.status)) from None
    _publish(request, consultation, change)
    return "/clinic/waiting-room" if from_queue else f"/clinic/consultations/{consultation.id}"


def _instant(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


async def admit_submit(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(await _change(request, "admit", roles=(Role.physician,)))


async def finish_submit(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(await _change(request, "finish", roles=(Role.physician,)))


async def cancel_submit(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(await _change(request, "cancel"))


async def reschedule_submit(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(await _change(request, "reschedule"))


# --- the live waiting room -----------------------------------------------------------------------------------


async def _queue_context(request: web.Request, desk: Desk) -> dict[str, Any]:
    async with read(request) as db:
        items = await queries.waiting_room(db, physician_id=desk.physician.id)
    now = utcnow()
    waited = {item.consultation.id: max(0, int((now - (item.consultation.checked_in_at or now)).total_seconds()
                                                // 60)) for item in items}
    return {"items": items, "waited": waited, "zone": desk.zone, "time_zone": desk.physician.time_zone,
            "updated_at": now}


async def _queue_response(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    desk = await _desk(request)
    return await render(request, "staff/waiting_room.html", {**await _queue_context(request, desk), "error": error},
                        status=status)


async def waiting_room_page(request: web.Request) -> web.Response:
    return await _queue_response(request)


async def waiting_room_list(request: web.Request) -> web.Response:
    """Only the list, for the page's script to swap in when the live stream says something changed."""
    desk = await _desk(request)
    return await render(request, "staff/_queue.html", await _queue_context(request, desk))


# --- working hours -------------------------------------------------------------------------------------------

_ROW_FIELD = re.compile(r"^rows-(\d{1,3})-(weekday|start|end|slot|remove)$")
HOURS_ERRORS = {"weekday": N_("Choose a day."), "start": N_("Enter a time such as 09:00."),
                "end": N_("Enter a time such as 13:00."), "slot_minutes": N_("From 5 to 120 minutes."),
                "order": N_("The end must be after the start."),
                "overlap": N_("This range overlaps another one on the same day."),
                "too_many": N_("Too many ranges: at most 70.")}


def _blank_row() -> dict[str, Any]:
    return {"weekday": "", "start": "", "end": "", "slot": "20", "remove": False, "errors": {}}


def _rows_from_form(form: Mapping[str, str]) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for name, value in form.items():
        match = _ROW_FIELD.match(name)
        if match:
            rows.setdefault(int(match.group(1)), _blank_row() | {"slot": ""})[match.group(2)] = value.strip()
    found = [rows[index] for index in sorted(rows)]
    for row in found:
        row["remove"] = bool(row["remove"])
    return found


def _errors_by_field(exc: ValidationError, names: Mapping[str, str]) -> dict[str, str]:
    """The first message for each form field a pydantic error names (a model-level error: `order`)."""
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else "order"
        found.setdefault(field, names.get(field, names["order"]))
    return found


def _hours_from_rows(rows: list[dict[str, Any]]) -> list[rules.WeeklyHours] | None:
    """The weekly pattern the rows describe, or None after marking each bad row's `errors`."""
    ranges: list[tuple[dict[str, Any], schemas.HoursIn]] = []
    failed = False
    for row in rows:
        if row["remove"] or not (row["weekday"] or row["start"] or row["end"]):
            continue  # removed, or one of the spare empty rows
        try:
            ranges.append((row, schemas.HoursIn.model_validate({
                "weekday": row["weekday"], "start": row["start"], "end": row["end"],
                "slot_minutes": row["slot"] or 20})))
        except ValidationError as exc:
            row["errors"], failed = _errors_by_field(exc, HOURS_ERRORS), True
    reached: dict[int, dt.time] = {}  # per weekday, the latest end so far
    for row, hours in sorted(ranges, key=lambda pair: (pair[1].weekday, pair[1].start)):
        if hours.weekday in reached and hours.start < reached[hours.weekday]:
            row["errors"]["order"], failed = HOURS_ERRORS["overlap"], True
        reached[hours.weekday] = max(hours.end, reached.get(hours.weekday, hours.end))
    if len(ranges) > MAX_ROWS:
        rows[-1]["errors"]["order"], failed = HOURS_ERRORS["too_many"], True
    if failed:
        return None
    return [rules.WeeklyHours(h.weekday, rules.Hours(h.start, h.end, h.slot_minutes)) for _, h in ranges]


EXCEPTION_ERRORS = {"day": N_("Enter a date."), "kind": N_("Choose a day off or extra hours."),
                    "start": N_("Enter a time such as 09:00."), "end": N_("Enter a time such as 13:00."),
                    "slot_minutes": N_("From 5 to 120 minutes."),
                    "order": N_("Extra hours need a start and an end after it."),
                    "past": N_("Choose today or a later date.")}


async def _availability_response(request: web.Request, target: Target, *, rows: list[dict[str, Any]] | None = None,
                                 exception: dict[str, str] | None = None,
                                 exception_errors: dict[str, str] | None = None, error: str | None = None,
                                 status: int = 200) -> web.Response:
    now, today = utcnow(), _today(target.zone)
    # The physician's own upcoming list, whoever looks: only to find the bookings their hours leave out.
    own_list = services.Viewer(target.principal.user_id, Role.physician, None, target.physician.id)
    async with read(request) as db:
        weekly = await availability.weekly_availability(db, physician_id=target.physician.id)
        extra = await availability.exceptions(db, physician_id=target.physician.id, since=today)
        upcoming = await queries.listing(db, viewer=own_list, scope="upcoming", now=now, limit=SCHEDULE_LIMIT)
    if rows is None:
        rows = [{"weekday": str(r.weekday), "start": _clock(r.start_time), "end": _clock(r.end_time),
                 "slot": str(r.slot_minutes), "remove": False, "errors": {}} for r in weekly]
        rows += [_blank_row() for _ in range(BLANK_ROWS)]
    uncovered = [item for item in upcoming if item.consultation.needs_reschedule
                 and item.consultation.status is ConsultationStatus.scheduled]
    return await render(request, "staff/availability.html", {
        "target": target, "zone": target.zone, "time_zone": target.physician.time_zone, "rows": rows,
        "exceptions": extra, "uncovered": uncovered, "saved": request.query.get("saved"), "error": error,
        "exception": exception or {"day": "", "kind": "day_off", "start": "", "end": "", "slot": "20"},
        "exception_errors": exception_errors or {}, "today": today}, status=status)


async def availability_page(request: web.Request) -> web.Response:
    return await _availability_response(request, await _target(request))


async def availability_submit(request: web.Request) -> web.Response:
    target = await _target(request)
    form = await read_form(request, back=f"{target.base}/availability")
    rows = _rows_from_form(form)
    hours = _hours_from_rows(rows)
    if hours is None:
        rows += [_blank_row() for _ in range(max(0, BLANK_ROWS - sum(1 for r in rows if not r["weekday"])))]
        return await _availability_response(request, target, rows=rows, status=422)
    try:
        async with tx(request) as db:
            await availability.replace_weekly_hours(db, physician_id=target.physician.id, hours=hours,
                                                    ctx=audit_context(request), now=utcnow(), weeks=_weeks(request))
    except ProblemError as problem:
        return await _availability_response(request, target, rows=rows, error=_problem_message(problem),
                                            status=problem.status)
    raise web.HTTPSeeOther(f"{target.base}/availability?saved=hours")


async def exception_submit(request: web.Request) -> web.Response:
    target = await _target(request)
    form = await read_form(request, back=f"{target.base}/availability")
    values = {key: form.get(key, "").strip() for key in ("day", "kind", "start", "end", "slot")}
    errors: dict[str, str] = {}
    body = None
    try:
        body = schemas.ExceptionIn.model_validate({
            "day": values["day"], "kind": values["kind"], "start": values["start"] or None,
            "end": values["end"] or None, "slot_minutes": values["slot"] or 20})
    except ValidationError as exc:
        errors = _errors_by_field(exc, EXCEPTION_ERRORS)
    if body is not None and body.day < _today(target.zone):
        errors["day"] = EXCEPTION_ERRORS["past"]
    if errors or body is None:
        return await _availability_response(request, target, exception=values, exception_errors=errors,
                                            status=422)
    hours = rules.Hours(body.start, body.end, body.slot_minutes) if body.start and body.end else None
    if body.kind == "day_off":
        hours = None
    try:
        async with tx(request) as db:
            await availability.add_exception(db, physician_id=target.physician.id, day=body.day,
                                             kind=ExceptionKind(body.kind), hours=hours, ctx=audit_context(request),
                                             now=utcnow(), weeks=_weeks(request))
    except ProblemError as problem:
        return await _availability_response(request, target, exception=values, error=_problem_message(problem),
                                            status=problem.status)
    raise web.HTTPSeeOther(f"{target.base}/availability?saved=exception")


async def exception_remove(request: web.Request) -> web.Response:
    target = await _target(request)
    await read_form(request, back=f"{target.base}/availability")
    exception_id = await _path_id(request, "exception_id")
    try:
        async with tx(request) as db:
            await availability.remove_exception(db, physician_id=target.physician.id, exception_id=exception_id,
                                                ctx=audit_context(request), now=utcnow(), weeks=_weeks(request))
    except ProblemError as problem:
        return await _availability_response(request, target, error=_problem_message(problem),
                                            status=problem.status)
    raise web.HTTPSeeOther(f"{target.base}/availability?saved=removed")


# --- a day's figures -----------------------------------------------------------------------------------------


async def stats_page(request: web.Request) -> web.Response:
    target = await _target(request)
    day = _date(request.query.get("day")) or _today(target.zone)
    async with read(request) as db:
        figures = await queries.stats(db, physician_id=target.physician.id, day=day)
    wait = None if figures.mean_wait_seconds is None else figures.mean_wait_seconds / 60
    return await render(request, "staff/stats.html", {
        "target": target, "zone": target.zone, "time_zone": target.physician.time_zone, "day": day,
        "figures": figures, "mean_wait_minutes": wait, "previous": day - dt.timedelta(days=1),
        "next": day + dt.timedelta(days=1)})


# --- admins: physicians, the catalogue, questionnaires --------------------------------------------------------


async def schedules_page(request: web.Request) -> web.Response:
    await page_user(request, roles=[Role.admin])
    async with read(request) as db:
        physicians = await people.list_physicians(db)
    return await render(request, "staff/schedules.html", {"physicians": physicians})


async def _current_questionnaires(request: web.Request) -> list[Questionnaire]:
    # No listing service yet (conditions.current_questionnaire reads one by code); a read-only query.
    async with read(request) as db:
        rows = await db.scalars(select(Questionnaire).where(Questionnaire.is_current.is_(True))
                                .order_by(Questionnaire.code))
        return list(rows.all())


CONDITION_FIELDS = ("code", "icd10", "name_ru", "name_en", "audience", "questionnaire")
CONDITION_ERRORS = {"code": N_("Lower-case Latin letters, digits and _ only, e.g. acute_bronchitis."),
                    "icd10": N_("An ICD-10 code such as J06.9, or leave it empty."),
                    "name_ru": N_("Enter the name in Russian."), "name_en": N_("Enter the name in English."),
                    "audience": N_("Choose who the entry is for."),
                    "questionnaire": N_("Choose a published questionnaire."),
                    "order": N_("Allow primary, repeat or both kinds of consultation.")}


def _condition_errors(exc: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        field = "_".join(loc) if loc[:1] == ["name"] else (loc[0] if loc else "order")
        found.setdefault(field, CONDITION_ERRORS.get(field, CONDITION_ERRORS["order"]))
    return found


async def _catalogue_response(request: web.Request, *, values: dict[str, Any] | None = None,
                              errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    async with read(request) as db:
        entries = await conditions.current_conditions(db, include_inactive=True)
    editing = request.query.get("edit")
    if values is None:
        values = {"code": "", "icd10": "", "name_ru": "", "name_en": "", "audience": "any", "questionnaire": "",
                  "allows_primary": True, "allows_repeat": True, "active": True}
        for entry in entries:
            if entry.code == editing:
                values = _condition_values(entry)
    return await render(request, "staff/catalogue.html", {
        "entries": entries, "questionnaires": await _current_questionnaires(request), "values": values,
        "errors": errors or {}, "saved": request.query.get("saved"),
        "existing": {entry.code for entry in entries}}, status=status)


def _condition_values(entry: Any) -> dict[str, Any]:
    return {"code": entry.code, "icd10": entry.icd10 or "", "name_ru": entry.name_ru, "name_en": entry.name_en,
            "audience": entry.audience, "questionnaire": entry.questionnaire_code,
            "allows_primary": entry.allows_primary, "allows_repeat": entry.allows_repeat, "active": entry.active}


async def catalogue_page(request: web.Request) -> web.Response:
    await page_user(request, roles=[Role.admin])
    return await _catalogue_response(request)


async def catalogue_submit(request: web.Request) -> web.Response:
    await page_user(request, roles=[Role.admin])
    form = await read_form(request)
    values: dict[str, Any] = {key: form.get(key, "").strip() for key in CONDITION_FIELDS}
    values |= {flag: form.get(flag) == "on" for flag in ("allows_primary", "allows_repeat", "active")}
    try:
        entry = ConditionEntry.model_validate({
            "code": values["code"], "icd10": values["icd10"] or None,
            "name": {"ru": values["name_ru"], "en": values["name_en"]}, "audience": values["audience"],
            "allows_primary": values["allows_primary"], "allows_repeat": values["allows_repeat"],
            "questionnaire": values["questionnaire"]})
    except ValidationError as exc:
        return await _catalogue_response(request, values=values, errors=_condition_errors(exc), status=422)
    try:
        async with tx(request) as db:
            saved = await conditions.save_condition(db, entry=entry, active=values["active"],
                                                    ctx=audit_context(request), now=utcnow())
    except ProblemError as problem:
        field = "questionnaire" if problem.code == "unknown_questionnaire" else "order"
        return await _catalogue_response(request, values=values, errors={field: _problem_message(problem)},
                                         status=problem.status)
    raise web.HTTPSeeOther(f"/clinic/catalogue?saved={saved.code}")


async def questionnaires_page(request: web.Request) -> web.Response:
    await page_user(request, roles=[Role.admin])
    return await render(request, "staff/questionnaires.html",
                        {"questionnaires": await _current_questionnaires(request)})


async def _questionnaire_response(request: web.Request, *, text: str | None = None,
                                  errors: list[tuple[str, str]] | None = None,
                                  problem: tuple[str, dict[str, Any]] | None = None,
                                  status: int = 200) -> web.Response:
    """The questionnaire as people read it, and its JSON to publish a new version from.

    `errors` are the format's own (field path, message); `problem` is a message of these pages with its
    values, e.g. where the JSON stops parsing.
    """
    await page_user(request, roles=[Role.admin])
    try:
        async with read(request) as db:
            current = await conditions.current_questionnaire(db, request.match_info["code"])
    except ProblemError:
        raise await _not_found(request) from None
    definition = QuestionnaireDefinition.model_validate(current.definition)
    if text is None:
        text = json.dumps(current.definition, ensure_ascii=False, indent=2)
    questions = {q.id: q for q in definition.questions}
    return await render(request, "staff/questionnaire.html", {
        "q": current, "definition": definition, "questions": questions, "text": text, "errors": errors or [],
        "problem": problem, "published": request.query.get("published")}, status=status)


async def questionnaire_page(request: web.Request) -> web.Response:
    return await _questionnaire_response(request)


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "—"


async def questionnaire_submit(request: web.Request) -> web.Response:
    await page_user(request, roles=[Role.admin])
    code = request.match_info["code"]
    form = await read_form(request)
    text = form.get("definition", "")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return await _questionnaire_response(request, text=text, status=422, problem=(
            N_("This is not valid JSON: line %(line)s, column %(column)s (%(reason)s)."),
            {"line": exc.lineno, "column": exc.colno, "reason": exc.msg}))
    if isinstance(data, dict):
        data.setdefault("version", 1)  # the version is assigned on publishing; leaving it out is fine
    try:
        definition = QuestionnaireDefinition.model_validate(data)
    except ValidationError as exc:
        return await _questionnaire_response(request, text=text, status=422, errors=[
            (_location(error["loc"]), error["msg"]) for error in exc.errors(include_url=False, include_input=False)])
    if definition.code != code:
        return await _questionnaire_response(request, text=text, status=422, problem=(
            N_("The code must stay %(code)s: publish a new version of this questionnaire here."), {"code": code}))
    async with tx(request) as db:
        published = await conditions.publish_questionnaire(db, definition=definition, ctx=audit_context(request),
                                                           now=utcnow())
    raise web.HTTPSeeOther(f"/clinic/questionnaires/{code}?published={published.version}")



# What the patient's device check reports, in words a physician reads at a glance (web/static/patient.js).
DEVICE_PROBLEMS = {
    "no_js": N_("the browser ran no check (scripts off)"),
    "devices_not_tested": N_("the patient skipped the check"),
    "permission_denied": N_("camera or microphone not allowed"),
    "no_camera": N_("no camera found"),
    "no_microphone": N_("no microphone found"),
    "microphone_silent": N_("no sound from the microphone during the check"),
    "speaker_not_heard": N_("the patient did not hear the test sound"),
    "speaker_not_tested": N_("sound not tested"),
    "no_media_devices": N_("the browser cannot use a camera"),
    "no_web_audio": N_("the browser cannot test sound"),
    "media_error": N_("camera or microphone error"),
}


def setup(app: web.Application) -> None:
    """Registers the staff pages and the template filters they format times and figures with."""
    env = aiohttp_jinja2.get_env(app)
    env.filters.update(FILTERS)
    env.globals.update(staff_kinds=KIND_NAMES, staff_statuses=STATUS_NAMES, device_problems=DEVICE_PROBLEMS)
    routes: list[tuple[str, str, PageHandler]] = [
        ("GET", "/clinic/schedule", schedule_page),
        ("GET", "/clinic/waiting-room", waiting_room_page),
        ("GET", "/clinic/waiting-room/list", waiting_room_list),
        ("GET", "/clinic/consultations/{consultation_id}", consultation_page),
        ("POST", "/clinic/consultations/{consultation_id}/admit", admit_submit),
        ("POST", "/clinic/consultations/{consultation_id}/finish", finish_submit),
        ("POST", "/clinic/consultations/{consultation_id}/cancel", cancel_submit),
        ("POST", "/clinic/consultations/{consultation_id}/reschedule", reschedule_submit),
        ("GET", "/clinic/schedules", schedules_page),
        ("GET", "/clinic/catalogue", catalogue_page),
        ("POST", "/clinic/catalogue", catalogue_submit),
        ("GET", "/clinic/questionnaires", questionnaires_page),
        ("GET", "/clinic/questionnaires/{code}", questionnaire_page),
        ("POST", "/clinic/questionnaires/{code}", questionnaire_submit),
    ]
    for base in ("/clinic", "/clinic/physicians/{physician_id}"):  # one's own, and any for admins
        routes += [("GET", f"{base}/availability", availability_page),
                   ("POST", f"{base}/availability", availability_submit),
                   ("POST", f"{base}/availability/exceptions", exception_submit),
                   ("POST", f"{base}/availability/exceptions/{{exception_id}}/remove", exception_remove),
                   ("GET", f"{base}/stats", stats_page)]
    for method, path, handler in routes:
        app.router.add_route(method, path, page_handler(handler))
