"""A physician's working hours: the weekly pattern, days off and extra hours, and the bookings they leave out.

The form works without scripts (spare blank rows for new ranges); a form that does not add up is shown again
with each bad row marked, and a domain refusal with a message saying what to do. The physician edits their
own hours; an admin edits anyone's at /clinic/physicians/{id}.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import audit_context
from server.http.problems import ProblemError
from server.scheduling import availability, queries, rules, schemas, services
from server.scheduling.models import ConsultationStatus, ExceptionKind
from web.i18n import N_
from web.pages import read_form, render
from web.staff_pages.common import SCHEDULE_LIMIT, Target, booking_weeks, load_target, local_today, path_id
from web.staff_pages.formatting import clock
from web.staff_pages.texts import problem_message

BLANK_ROWS = 3  # empty weekly-hours rows a page without scripts offers for new ranges
MAX_ROWS = 70  # as many ranges as the API takes

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
    now, today = utcnow(), local_today(target.zone)
    # The physician's own upcoming list, whoever looks: only to find the bookings their hours leave out.
    own_list = services.Viewer(target.principal.user_id, Role.physician, None, target.physician.id)
    async with read(request) as db:
        weekly = await availability.weekly_availability(db, physician_id=target.physician.id)
        extra = await availability.exceptions(db, physician_id=target.physician.id, since=today)
        upcoming = await queries.listing(db, viewer=own_list, scope="upcoming", now=now, limit=SCHEDULE_LIMIT)
    if rows is None:
        rows = [{"weekday": str(r.weekday), "start": clock(r.start_time), "end": clock(r.end_time),
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
    """The hours editor, with the upcoming exceptions and the bookings the hours no longer cover."""
    return await _availability_response(request, await load_target(request))


async def availability_submit(request: web.Request) -> web.Response:
    """Replace the weekly pattern with the rows posted (removed and empty rows left out)."""
    target = await load_target(request)
    form = await read_form(request, back=f"{target.base}/availability")
    rows = _rows_from_form(form)
    hours = _hours_from_rows(rows)
    if hours is None:
        rows += [_blank_row() for _ in range(max(0, BLANK_ROWS - sum(1 for r in rows if not r["weekday"])))]
        return await _availability_response(request, target, rows=rows, status=422)
    try:
        async with tx(request) as db:
            await availability.replace_weekly_hours(db, physician_id=target.physician.id, hours=hours,
                                                    ctx=audit_context(request), now=utcnow(),
                                                    weeks=booking_weeks(request))
    except ProblemError as problem:
        return await _availability_response(request, target, rows=rows, error=problem_message(problem),
                                            status=problem.status)
    raise web.HTTPSeeOther(f"{target.base}/availability?saved=hours")


async def exception_submit(request: web.Request) -> web.Response:
    """Add a day off or extra hours on one date, today or later."""
    target = await load_target(request)
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
    if body is not None and body.day < local_today(target.zone):
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
                                             now=utcnow(), weeks=booking_weeks(request))
    except ProblemError as problem:
        return await _availability_response(request, target, exception=values, error=problem_message(problem),
                                            status=problem.status)
    raise web.HTTPSeeOther(f"{target.base}/availability?saved=exception")


async def exception_remove(request: web.Request) -> web.Response:
    """Take back a day off or extra hours, so that day follows the weekly pattern again."""
    target = await load_target(request)
    await read_form(request, back=f"{target.base}/availability")
    exception_id = await path_id(request, "exception_id")
    try:
        async with tx(request) as db:
            await availability.remove_exception(db, physician_id=target.physician.id, exception_id=exception_id,
                                                ctx=audit_context(request), now=utcnow(), weeks=booking_weeks(request))
    except ProblemError as problem:
        return await _availability_response(request, target, error=problem_message(problem),
                                            status=problem.status)
    raise web.HTTPSeeOther(f"{target.base}/availability?saved=removed")

