"""The waiting room: the device check and check-in questions before, waiting to be let in after.

Check-in needs the consents the clinic requires (the gate), so the page lists what is still to sign, each with a
link that comes back here, before the patient fills anything in.

Check-in is the last screening before the call, so its answers can still stop the visit (the emergency or
in-person page); the physician's open waiting-room pages are told either way, so they never show a stale queue.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from consent.problems import ConsentRequired
from server import keys
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from server.people.models import Physician
from server.scheduling import conditions, queries, rules, services
from server.scheduling.api import viewer_for
from server.scheduling.models import ConsultationStatus
from server.scheduling.screening import QuestionnaireDefinition
from web.consent_pages import status as consent_status
from web.pages import page_user, read_form
from web.patient_pages.forms import Answers, answer_errors, problem_code, read_answers, read_device_check
from web.patient_pages.own_consultation import (
    consultation_id_of,
    load_own,
    patient_and_consultation_id,
    publish_to_physician,
)
from web.patient_pages.rendering import PATIENTS, not_found, refusal_page, render_page
from web.patient_pages.texts import TOP_ERRORS


async def _checkin_definition(session: AsyncSession) -> QuestionnaireDefinition:
    found = await conditions.current_questionnaire(session, services.CHECKIN_QUESTIONNAIRE)
    return QuestionnaireDefinition.model_validate(found.definition)


async def _waiting_room(request: web.Request, principal: Principal, consultation_id: uuid.UUID | None, *,
                        answers: Answers | None = None, error: str | None = None,
                        status: int = 200) -> web.Response:
    settings = request.app[keys.settings]
    now = utcnow()
    async with read(request) as session:
        consultation = await load_own(session, request, principal, consultation_id)
        view = await queries.view(session, consultation.id)
        physician = await session.get(Physician, consultation.physician_id)
        definition = await _checkin_definition(session)
        consents = await consent_status.overview(session, patient_id=consultation.patient_id,
                                                 policy=request.app[keys.consent].policy, now=now)
    context: dict[str, Any] = {"view": view, "c": consultation, "physician": physician}
    if consultation.status in (ConsultationStatus.waiting, ConsultationStatus.in_call):
        return await render_page(request, "waiting.html", context, status=status)
    if consultation.status is not ConsultationStatus.scheduled:
        raise web.HTTPFound(f"/my/consultations/{consultation.id}") if request.method == "GET" \
            else web.HTTPSeeOther(f"/my/consultations/{consultation.id}")
    limits = services.Windows.from_settings(settings)
    is_open = rules.checkin_open(consultation.starts_at, now=now, opens_before=limits.checkin_opens,
                                 grace=limits.no_show_grace)
    return await render_page(request, "checkin.html", {
        **context, "open": is_open, "consents": consents, "here": f"/my/consultations/{consultation.id}/waiting-room",
        "definition": definition, "answers": answers or Answers(), "error": error,
        "opens_at": consultation.starts_at - limits.checkin_opens, "opens_minutes": settings.checkin_opens_minutes,
        "too_late": now > consultation.starts_at + limits.no_show_grace}, status=status)


async def waiting_room_page(request: web.Request) -> web.Response:
    """Before check-in: the device check and a few questions; after it: waiting to be let in."""
    principal = await page_user(request, roles=PATIENTS)
    return await _waiting_room(request, principal, consultation_id_of(request))


async def check_in_submit(request: web.Request) -> web.Response:
    """Check in with the answers and the device check; a screening stop shows its page instead of the queue."""
    principal, consultation_id = await patient_and_consultation_id(request)
    here = f"/my/consultations/{consultation_id}/waiting-room"
    form = await read_form(request, back=here)
    async with read(request) as session:
        consultation = await load_own(session, request, principal, consultation_id)
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
                                             windows=services.Windows.from_settings(request.app[keys.settings]),
                                             consent_policy=request.app[keys.consent].policy)
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        answers.errors.update(answer_errors(problem))
        code = problem_code(problem)
        if code == ConsentRequired.code:  # the page lists the documents to sign, each with its link
            return await _waiting_room(request, principal, consultation_id, answers=answers, status=problem.status)
        return await _waiting_room(request, principal, consultation_id, answers=answers,
                                   error=None if answers.errors else code if code in TOP_ERRORS else "error",
                                   status=problem.status)
    refused = isinstance(result, services.ScreeningRefusal)
    publish_to_physician(request, consultation.physician_id, "refused" if refused else "checked_in", consultation_id)
    if isinstance(result, services.ScreeningRefusal):
        return await refusal_page(request, result, stage="checkin", back=f"/my/consultations/{consultation_id}")
    raise web.HTTPSeeOther(here)
