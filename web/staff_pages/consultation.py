"""One consultation as staff see it: what the patient answered, how their devices did, whether their consents
hold (with the signed PDFs, and a paper consent to prepare), what can be done next.

Every opening is recorded in the audit log, as through the API, because the page shows health data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from consent import signing
from server import keys
from server.audit import services as audit
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import audit_context
from server.http.problems import NotFound
from server.people.models import Physician
from server.scheduling import availability, queries, rules, services
from server.scheduling.api import viewer_for
from server.scheduling.models import ConsultationStatus, Questionnaire
from server.scheduling.screening import Question, QuestionnaireDefinition, Text
from signaling import invitations
from web import call_pages, guest_pages
from web.consent_pages import status as consent_status
from web.i18n import N_
from web.pages import page_user, render
from web.staff_pages.common import STAFF, booking_weeks, not_found, path_id

INVITATION_STATUSES = {"open": N_("Not used yet"), "redeemed": N_("Used"), "revoked": N_("Revoked"),
                       "expired": N_("Expired")}


@dataclass(frozen=True)
class Answer:
    """One screening answer as the physician reads it: the question's text, not its id."""

    key: str
    value: Any
    question: Question | None
    choice: Text | None


def screening_answers(definition: Mapping[str, Any] | None, answers: Mapping[str, Any] | None) -> list[Answer]:
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


async def consultation_response(request: web.Request, *, error: str | None = None, new_link: str | None = None,
                                status: int = 200) -> web.Response:
    """The detail a physician needs in a short slot; every opening is in the audit log, as through the API.

    `new_link` is a guest's invitation link just made: shown this once, as it is not kept."""
    principal = await page_user(request, roles=STAFF)
    viewer = await viewer_for(request, principal)
    consultation_id = await path_id(request, "consultation_id")
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
            consents = None  # a physician whose booking was cancelled no longer treats the patient
            if await signing.may_act_for(db, signing.Actor(principal.user_id, principal.role, None),
                                         consultation.patient_id):
                consents = await consent_status.overview(db, patient_id=consultation.patient_id,
                                                         policy=request.app[keys.consent].policy, now=utcnow())
                await audit.record(db, ctx=audit_context(request), action="consent.listed", object_type="patient",
                                   object_id=consultation.patient_id, subject_patient_id=consultation.patient_id,
                                   now=utcnow())
            patient = await consent_status.patient_name_and_locale(db, consultation.patient_id)
            guests = None  # the physician's own invitations to the call (not an admin's business)
            if principal.role is Role.physician:
                guests = await invitations.list_invitations(db, consultation_id=consultation.id, viewer=viewer,
                                                            ctx=audit_context(request), now=utcnow())
            slots = []
            if consultation.status is ConsultationStatus.scheduled:
                slots = await availability.free_slots(db, now=utcnow(), weeks=booking_weeks(request),
                                                      physician_id=consultation.physician_id, limit=60)
    except NotFound:
        raise await not_found(request) from None
    zone = ZoneInfo(physician.time_zone if physician else "UTC")
    allowed = rules.TRANSITIONS[consultation.status]  # the buttons offered are the state machine's next steps
    is_physician = principal.role is Role.physician
    return await render(request, "staff/consultation.html", {
        "item": item, "c": consultation, "zone": zone, "time_zone": zone.key,
        "screening": screening_answers(screening.definition if screening else None, consultation.screening_answers),
        "screening_title": screening.definition.get("title") if screening else None,
        "screening_version": screening.version if screening else None,
        "checkin": screening_answers(checkin.definition if checkin else None, consultation.checkin_answers),
        "device": consultation.device_check, "slots": slots, "error": error, "consents": consents,
        "patient_locale": patient[1] if patient else "ru", "here": request.path,
        "diagnosis": request.query.get("diagnosis"), "today": utcnow().date().isoformat(),
        "may_admit": is_physician and consultation.status is ConsultationStatus.waiting,
        "may_call": is_physician and consultation.status in call_pages.LIVE,
        "may_finish": is_physician and ConsultationStatus.completed in allowed,
        "may_cancel": ConsultationStatus.cancelled in allowed,
        "may_invite": is_physician and consultation.status in invitations.INVITABLE,
        "guests": guests, "new_link": new_link, "guest_relations": guest_pages.RELATIONS, "now": utcnow(),
        "invitation_status": invitations.status_of, "invitation_statuses": INVITATION_STATUSES,
        "back": "/clinic/schedule?day=" + consultation.starts_at.astimezone(zone).date().isoformat()
        if is_physician else "/clinic/schedules"}, status=status)


async def consultation_page(request: web.Request) -> web.Response:
    """The consultation in the path, for its physician or an admin."""
    return await consultation_response(request)
