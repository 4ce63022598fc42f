"""Booking on a patient's behalf: a physician (into their own schedule) or an admin (into anyone's), by phone.

`GET /clinic/book` walks three steps with query parameters, so it needs no scripts: find the patient, choose the
reason, kind and a free time, then ask the screening questions; `POST /clinic/book` books through the same service
as the API. A red flag or an in-person recommendation books nothing and says so (422); a domain refusal shows the
form again with what to do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import keys
from server.audit import services as audit
from server.auth.models import Role, User
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from server.people import services as people
from server.people.models import Patient, Physician
from server.scheduling import availability, conditions, services
from server.scheduling.api import EMERGENCY, viewer_for
from server.scheduling.models import ConditionVersion, ConsultationKind
from server.scheduling.screening import QuestionnaireDefinition
from web.i18n import N_
from web.pages import page_user, read_form, render
from web.patient_pages.catalogue import KINDS, kinds_of
from web.patient_pages.formatting import number
from web.patient_pages.forms import Answers, Message, answer_errors, clean_text, parse_instant, parse_uuid, read_answers
from web.staff_pages.common import STAFF, not_found
from web.staff_pages.texts import PROBLEM_MESSAGES

SEARCH_LIMIT = 20
SLOT_LIMIT = 30
BOOKING_PROBLEMS = {
    **PROBLEM_MESSAGES,
    "no_prior_diagnosis": N_("A repeat consultation needs a diagnosis of this condition made in person at the clinic. "
                             "Book a primary consultation instead."),
    "primary_not_allowed": N_("This condition is only seen in repeat consultations."),
    "repeat_not_allowed": N_("This condition is only seen in primary consultations."),
}
GENERIC = N_("The booking could not be made. Check the form and try again.")


@dataclass
class Booking:
    """What the page was asked for, each part checked; `None` where it is missing or wrong."""

    principal: Principal
    patient: Patient
    patient_account: User
    physicians: list[tuple[Physician, User]]
    physician: tuple[Physician, User] | None
    conditions: list[ConditionVersion]
    condition: ConditionVersion | None
    kind: str | None
    starts_at: dt.datetime | None
    definition: QuestionnaireDefinition | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.physician[0].time_zone if self.physician else "UTC")

    @property
    def kinds(self) -> list[str]:
        return kinds_of(self.condition) if self.condition else list(KINDS)

    @property
    def ready(self) -> bool:
        return self.definition is not None and self.starts_at is not None and self.kind in self.kinds


async def _search(request: web.Request, text: str) -> list[tuple[Patient, User]]:
    """Patients whose name or e-mail holds `text`; each one shown is a read of their data, so it is audited."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = (select(Patient, User).join(User, User.id == Patient.user_id)
             .where(User.role == Role.patient,
                    or_(User.full_name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\")))
             .order_by(User.full_name, User.id).limit(SEARCH_LIMIT))
    async with tx(request) as session:
        found = [(patient, user) for patient, user in (await session.execute(query)).all()]
        now = utcnow()
        for patient, _ in found:
            await audit.record(session, ctx=audit_context(request), action="patient.searched", object_type="patient",
                               object_id=patient.id, subject_patient_id=patient.id, now=now)
    return found


async def _booking(request: web.Request, principal: Principal, params: Mapping[str, str]) -> Booking:
    """The patient (404 page without one), and whatever else of the choice is there and valid."""
    patient_id = parse_uuid(params.get("patient_id"))
    viewer = await viewer_for(request, principal)
    wanted = parse_uuid(params.get("physician_id"))
    if principal.role is Role.physician:
        if viewer.physician_id is None or (params.get("physician_id") and wanted != viewer.physician_id):
            raise await not_found(request)  # a physician books into their own schedule only
        wanted = viewer.physician_id
    async with read(request) as session:
        row = None if patient_id is None else (await session.execute(
            select(Patient, User).join(User, User.id == Patient.user_id).where(Patient.id == patient_id))).first()
        if row is None:
            raise await not_found(request)
        physicians = await people.list_physicians(session)
        physician = next(((p, u) for p, u in physicians if p.id == wanted), None)
        if principal.role is Role.physician and physician is None:
            raise await not_found(request)
        current = await conditions.current_conditions(session)
        condition = next((c for c in current if c.code == params.get("condition")), None)
        kind = params.get("kind") if params.get("kind") in KINDS else None
        found = Booking(principal, row[0], row[1], physicians, physician, current, condition, kind,
                        parse_instant(params.get("starts_at")))
        if condition is not None and physician is not None and found.starts_at is not None:
            found.definition = await _definition(session, condition)
    return found


async def _definition(session: AsyncSession, condition: ConditionVersion) -> QuestionnaireDefinition | None:
    try:
        questionnaire = await conditions.current_questionnaire(session, condition.questionnaire_code)
    except ProblemError:
        return None
    return QuestionnaireDefinition.model_validate(questionnaire.definition)


async def _page(request: web.Request, booking: Booking | None, *, status: int = 200, **context: Any) -> web.Response:
    settings = request.app[keys.settings]
    slots: list[availability.FreeSlot] = []
    if booking is not None and booking.physician is not None and not booking.ready:
        async with read(request) as session:
            slots = await availability.free_slots(session, now=utcnow(), weeks=settings.booking_weeks_ahead,
                                                  physician_id=booking.physician[0].id, limit=SLOT_LIMIT)
    return await render(request, "staff/book.html", {
        "b": booking, "slots": slots, "zone": booking.zone if booking else ZoneInfo("UTC"), "number": number,
        "answers": Answers(), "complaint": "", "complaint_max": settings.complaint_max_chars,
        "EMERGENCY": EMERGENCY, "refusal": None, "error": None, "complaint_error": None, "kind_error": False,
        "search": "", "found": [], **context}, status=status)


async def book_page(request: web.Request) -> web.Response:
    """Find the patient; then the reason, kind and time; then the screening questions."""
    principal = await page_user(request, roles=STAFF)
    if "patient_id" not in request.query:
        search = clean_text(request.query.get("q", ""), limit=100)
        found = await _search(request, search) if search else []
        return await _page(request, None, search=search, found=found)
    booking = await _booking(request, principal, request.query)
    kind_error = booking.kind is not None and booking.condition is not None and booking.kind not in booking.kinds
    return await _page(request, booking, kind_error=kind_error)


async def book_submit(request: web.Request) -> web.Response:
    """Screen and book for the patient; success opens the new consultation."""
    principal = await page_user(request, roles=STAFF)
    form = await read_form(request, back="/clinic/book")
    booking = await _booking(request, principal, form)
    if not booking.ready or booking.definition is None or booking.physician is None or booking.starts_at is None \
            or booking.condition is None or booking.kind is None:
        raise web.HTTPSeeOther(f"/clinic/book?patient_id={booking.patient.id}")
    settings = request.app[keys.settings]
    answers = read_answers(booking.definition, form)
    complaint = clean_text(form.get("complaint", ""))
    complaint_error: Message | None = None
    if len(complaint) > settings.complaint_max_chars:
        complaint_error = (N_("Please shorten the description to %(max)s characters."),
                           {"max": settings.complaint_max_chars})
    if answers.errors or complaint_error:
        return await _page(request, booking, answers=answers, complaint=complaint, complaint_error=complaint_error,
                           status=422)
    try:
        async with tx(request) as session:
            result = await services.book(
                session, patient_id=booking.patient.id, physician_id=booking.physician[0].id,
                starts_at=booking.starts_at, condition_code=booking.condition.code,
                kind=ConsultationKind(booking.kind), answers=answers.values, complaint=complaint,
                ctx=audit_context(request), now=utcnow(), windows=services.Windows.from_settings(settings))
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        answers.errors.update(answer_errors(problem))
        error = None if answers.errors else BOOKING_PROBLEMS.get(problem.code, GENERIC)
        return await _page(request, booking, answers=answers, complaint=complaint, error=error,
                           status=problem.status)
    if isinstance(result, services.ScreeningRefusal):
        return await _page(request, booking, refusal=result, status=422)
    raise web.HTTPSeeOther(f"/clinic/consultations/{result.id}")

