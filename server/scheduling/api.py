"""REST endpoints for consultations: booking, changes, check-in, the waiting room, admission, figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import services as consent
from server import keys
from server.audit import services as audit
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import path_uuid
from server.http.principal import Principal, audit_context, authenticate
from server.http.problems import FieldError, NotFound, ValidationFailed
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.people.models import Patient, Physician
from server.scheduling import queries, schemas, services
from server.scheduling.models import ConsultationKind
from server.scheduling.problems import ScreeningStopped

router = ApiRouter("consultations")
EMERGENCY = {"ru": "Если состояние угрожает жизни, звоните 103 или 112 прямо сейчас.",
             "en": "If this may be life-threatening, call 103 or 112 now."}


async def viewer_for(request: web.Request, principal: Principal | None = None) -> services.Viewer:
    """The caller as the scheduling domain sees them (with their physician id, if any)."""
    principal = principal or await authenticate(request)
    physician_id = None
    if principal.role is Role.physician:
        async with read(request) as session:
            physician_id = await session.scalar(select(Physician.id).where(Physician.user_id == principal.user_id))
    return services.Viewer(principal.user_id, principal.role, principal.patient_id, physician_id)


def refusal_problem(refusal: services.ScreeningRefusal, locale: str) -> ScreeningStopped:
    """The answer for a stopped booking or check-in: what to do now, in the patient's language."""
    messages = [rule.message.get(locale) for rule in refusal.rules]
    rules = [{"id": rule.id, "kind": rule.kind.value, "message": rule.message.get(locale)} for rule in refusal.rules]
    if refusal.red_flag:
        emergency = {"numbers": ["103", "112"], "message": EMERGENCY.get(locale, EMERGENCY["en"])}
        return ScreeningStopped("red_flag", "Emergency care is needed, not a teleconsultation",
                                " ".join(messages), rules, emergency=emergency)
    return ScreeningStopped("in_person_recommended", "Please come to the clinic in person", " ".join(messages), rules)


def consultation_out(item: queries.ConsultationView) -> schemas.ConsultationOut:
    c = item.consultation
    return schemas.ConsultationOut(
        id=c.id, patient_id=c.patient_id, patient_name=item.patient_name, physician_id=c.physician_id,
        physician_name=item.physician_name, condition_code=item.condition.code,
        condition_name_ru=item.condition.name_ru, condition_name_en=item.condition.name_en, kind=c.kind.value,
        status=c.status.value, starts_at=c.starts_at, ends_at=c.ends_at, needs_reschedule=c.needs_reschedule,
        checked_in_at=c.checked_in_at, admitted_at=c.admitted_at, ended_at=c.ended_at, cancelled_at=c.cancelled_at)


def detail_out(item: queries.ConsultationView) -> schemas.ConsultationDetailOut:
    c = item.consultation
    return schemas.ConsultationDetailOut(
        **consultation_out(item).model_dump(), complaint=c.complaint, screening_questionnaire=item.questionnaire_code,
        screening_answers=c.screening_answers, checkin_answers=c.checkin_answers, device_check=c.device_check)


def _publish(request: web.Request, physician_id: uuid.UUID, event: str, consultation_id: uuid.UUID) -> None:
    request.app[keys.waiting_room].publish(physician_id, {"event": event, "consultation_id": str(consultation_id)})


@router.route("POST", "/api/v1/consultations", summary="Book a consultation (patients; staff for a patient)",
              body=schemas.BookingIn, response=schemas.ConsultationDetailOut, status=201,
              roles=[Role.patient, Role.physician, Role.admin], errors=(404, 409))
async def book(request: web.Request, body: schemas.BookingIn) -> web.Response:
    """Screens first: a red flag refuses with emergency instructions (422 `red_flag`), a contraindication
    recommends an in-person visit (422 `in_person_recommended`); both are recorded for the clinic."""
    principal = await authenticate(request)
    settings = request.app[keys.settings]
    if principal.role is Role.patient:
        if body.patient_id not in (None, principal.patient_id):
            raise NotFound()
        patient_id = principal.patient_id
    else:
        if body.patient_id is None:
            raise ValidationFailed("staff book for a patient: patient_id is required", errors=[
                FieldError(field="patient_id", message="required when staff book", type="missing")])
        viewer = await viewer_for(request, principal)
        if principal.role is Role.physician and viewer.physician_id != body.physician_id:
            raise NotFound()  # a physician books into their own schedule; an admin into anyone's
        async with read(request) as session:
            if await session.get(Patient, body.patient_id) is None:
                raise NotFound()
        patient_id = body.patient_id
    if len(body.complaint) > settings.complaint_max_chars:
        raise ValidationFailed(errors=[FieldError(field="complaint", type="string_too_long",
                                                  message=f"at most {settings.complaint_max_chars} characters")])
    assert patient_id is not None  # noqa: S101  # the patient role always carries its patient id
    async with tx(request) as session:
        result = await services.book(session, patient_id=patient_id, physician_id=body.physician_id,
                                     starts_at=body.starts_at, condition_code=body.condition_code,
                                     kind=ConsultationKind(body.kind), answers=body.answers,
                                     complaint=body.complaint, ctx=audit_context(request), now=utcnow(),
                                     windows=services.Windows.from_settings(settings))
        view = None if isinstance(result, services.ScreeningRefusal) else await queries.view(session, result.id)
    if isinstance(result, services.ScreeningRefusal):
        raise refusal_problem(result, principal.locale)
    assert view is not None  # noqa: S101  # set whenever the booking was made
    return json_response(detail_out(view), status=201)


@router.route("GET", "/api/v1/consultations", summary="My consultations (patient or physician)",
              query=schemas.ConsultationsQuery, response=schemas.ConsultationList,
              roles=[Role.patient, Role.physician, Role.admin])
async def list_consultations(request: web.Request, query: schemas.ConsultationsQuery) -> web.Response:
    viewer = await viewer_for(request)
    async with tx(request) as session:
        items = await queries.listing(session, viewer=viewer, scope=query.scope, now=utcnow(),
                                      date_from=query.date_from, date_to=query.date_to, limit=query.limit)
        if viewer.role is not Role.patient:
            await audit_listing(session, request, items)
    return json_response(schemas.ConsultationList(items=[consultation_out(i) for i in items]))


async def audit_listing(session: AsyncSession, request: web.Request, items: list[queries.ConsultationView]) -> None:
    """A list that names patients and their reasons is a read of each one's data: one entry per patient."""
    now = utcnow()
    for patient_id in dict.fromkeys(item.consultation.patient_id for item in items):
        await audit.record(session, ctx=audit_context(request), action="consultation.listed",
                           object_type="patient", object_id=patient_id, subject_patient_id=patient_id, now=now)


@router.route("GET", "/api/v1/consultations/{consultation_id}", summary="One consultation, with the screening",
              response=schemas.ConsultationDetailOut, roles=[Role.patient, Role.physician, Role.admin],
              errors=(404,))
async def get_consultation(request: web.Request) -> web.Response:
    """Another patient's (or physician's) consultation answers 404. Staff reads are audited."""
    viewer = await viewer_for(request)
    consultation_id = path_uuid(request, "consultation_id")
    async with tx(request) as session:
        consultation = await services.load(session, consultation_id, viewer)
        if viewer.role is not Role.patient:
            await audit.record(session, ctx=audit_context(request), action="consultation.read",
                               object_type="consultation", object_id=consultation.id,
                               subject_patient_id=consultation.patient_id, now=utcnow())
        view = await queries.view(session, consultation.id)
    return json_response(detail_out(view))


async def _change(request: web.Request, change: str, **kwargs: object) -> web.Response:
    viewer = await viewer_for(request)
    consultation_id = path_uuid(request, "consultation_id")
    settings = request.app[keys.settings]
    async with tx(request) as session:
        operation = getattr(services, change)
        timed: dict[str, object] = {"windows": services.Windows.from_settings(settings)} \
            if change in ("cancel", "reschedule") else {}
        if change == "admit":
            timed["consent_policy"] = request.app[keys.consent].policy
        consultation = await operation(session, consultation_id=consultation_id, viewer=viewer,
                                       ctx=audit_context(request), now=utcnow(), **kwargs, **timed)
        view = await queries.view(session, consultation.id)
    _publish(request, view.consultation.physician_id, change, view.consultation.id)
    if change == "finish":
        await request.app[keys.calls].finished(view.consultation.id)
    return json_response(detail_out(view))


@router.route("POST", "/api/v1/consultations/{consultation_id}/cancel", summary="Cancel a booking",
              response=schemas.ConsultationDetailOut, roles=[Role.patient, Role.physician, Role.admin],
              errors=(404, 409))
async def cancel(request: web.Request) -> web.Response:
    """Patients may cancel until the clinic's cut-off before the start; staff at any time."""
    return await _change(request, "cancel")


@router.route("POST", "/api/v1/consultations/{consultation_id}/reschedule", summary="Move to another free slot",
              body=schemas.RescheduleIn, response=schemas.ConsultationDetailOut,
              roles=[Role.patient, Role.physician, Role.admin], errors=(404, 409))
async def reschedule(request: web.Request, body: schemas.RescheduleIn) -> web.Response:
    return await _change(request, "reschedule", starts_at=body.starts_at)


@router.route("POST", "/api/v1/consultations/{consultation_id}/check-in",
              summary="Enter the waiting room (repeat screening and device check)", body=schemas.CheckInIn,
              response=schemas.ConsultationDetailOut, roles=[Role.patient], errors=(404, 409))
async def check_in(request: web.Request, body: schemas.CheckInIn) -> web.Response:
    """Opens shortly before the start; a red flag stops the check-in as it stops a booking. Without valid
    consents (missing, outdated by a material new version, withdrawn, expired) it answers 409
    `consent_required`, listing each document and why."""
    principal = await authenticate(request)
    viewer = await viewer_for(request, principal)
    consultation_id = path_uuid(request, "consultation_id")
    async with tx(request) as session:
        result = await services.check_in(session, consultation_id=consultation_id, viewer=viewer,
                                         answers=body.answers, device_check=body.device_check.model_dump(),
                                         ctx=audit_context(request), now=utcnow(),
                                         windows=services.Windows.from_settings(request.app[keys.settings]),
                                         consent_policy=request.app[keys.consent].policy)
        consultation = await services.load(session, consultation_id, viewer)
        view = await queries.view(session, consultation.id)
    _publish(request, consultation.physician_id, "refused" if isinstance(result, services.ScreeningRefusal)
             else "checked_in", consultation.id)
    if isinstance(result, services.ScreeningRefusal):
        raise refusal_problem(result, principal.locale)
    return json_response(detail_out(view))


@router.route("POST", "/api/v1/consultations/{consultation_id}/admit", summary="Let a waiting patient in",
              response=schemas.ConsultationDetailOut, roles=[Role.physician], errors=(404, 409))
async def admit(request: web.Request) -> web.Response:
    return await _change(request, "admit")


@router.route("POST", "/api/v1/consultations/{consultation_id}/finish", summary="End the consultation",
              response=schemas.ConsultationDetailOut, roles=[Role.physician], errors=(404, 409))
async def finish(request: web.Request) -> web.Response:
    return await _change(request, "finish")


async def _own_physician_id(request: web.Request) -> uuid.UUID:
    viewer = await viewer_for(request)
    if viewer.physician_id is None:
        raise NotFound()
    return viewer.physician_id


@router.route("GET", "/api/v1/physicians/me/waiting-room", summary="Patients waiting for me",
              response=schemas.QueueOut, roles=[Role.physician])
async def waiting_room(request: web.Request) -> web.Response:
    physician_id = await _own_physician_id(request)
    policy, now = request.app[keys.consent].policy, utcnow()
    async with tx(request) as session:
        items = await queries.waiting_room(session, physician_id=physician_id)
        await audit_listing(session, request, items)
        gates = {i.consultation.id: await consent.check_gate(session, i.consultation, policy=policy, now=now)
                 for i in items}
    return json_response(schemas.QueueOut(items=[schemas.QueueItem(
        consultation_id=i.consultation.id, patient_name=i.patient_name, kind=i.consultation.kind.value,
        condition_name_ru=i.condition.name_ru, condition_name_en=i.condition.name_en,
        starts_at=i.consultation.starts_at, checked_in_at=i.consultation.checked_in_at,
        device_check=i.consultation.device_check,
        consent=schemas.ConsentGateOut(may_start=gates[i.consultation.id].may_start,
                                       may_record=gates[i.consultation.id].may_record,
                                       problems=consent.gate_problems(gates[i.consultation.id])))
        for i in items]))


@router.route("GET", "/api/v1/physicians/me/waiting-room/events",
              summary="Server-sent events when the waiting room changes", roles=[Role.physician])
async def waiting_room_events(request: web.Request) -> web.StreamResponse:
    """`text/event-stream`; each event names a consultation and what happened. Reload the list on connect."""
    physician_id = await _own_physician_id(request)
    bus = request.app[keys.waiting_room]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = bus.subscribe(physician_id)
    try:
        await response.write(b"event: ready\ndata: {}\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(f"event: {event['event']}\ndata: {json.dumps(event)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        bus.unsubscribe(physician_id, queue)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
    return response


@router.route("GET", "/api/v1/physicians/{physician_id}/stats", summary="A clinic day's figures for a physician",
              query=schemas.StatsQuery, response=schemas.StatsOut, roles=[Role.physician, Role.admin],
              errors=(404,))
async def day_stats(request: web.Request, query: schemas.StatsQuery) -> web.Response:
    viewer = await viewer_for(request)
    physician_id = path_uuid(request, "physician_id")
    if viewer.role is Role.physician and viewer.physician_id != physician_id:
        raise NotFound()
    async with read(request) as session:
        figures = await queries.stats(session, physician_id=physician_id, day=query.day)
    return json_response(schemas.StatsOut(physician_id=physician_id, day=query.day, **figures.__dict__))
