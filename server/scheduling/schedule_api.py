"""REST endpoints for hours, free slots, the conditions catalogue, questionnaires and diagnoses."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from aiohttp import web

from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import path_uuid
from server.http.principal import audit_context
from server.http.problems import NotFound
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.people.models import Patient
from server.scheduling import availability, conditions, queries, rules, schemas
from server.scheduling.api import consultation_out, viewer_for
from server.scheduling.models import Consultation, ExceptionKind
from server.scheduling.screening import ConditionEntry, QuestionnaireDefinition

router = ApiRouter("schedules")


@router.route("GET", "/api/v1/slots", summary="Free slots by physician, specialty and dates",
              query=schemas.SlotsQuery, response=schemas.SlotList)
async def free_slots(request: web.Request, query: schemas.SlotsQuery) -> web.Response:
    settings = request.app[keys.settings]
    async with read(request) as session:
        found = await availability.free_slots(session, now=utcnow(), weeks=settings.booking_weeks_ahead,
                                              physician_id=query.physician_id, specialty=query.specialty,
                                              date_from=query.date_from, date_to=query.date_to, limit=query.limit)
    return json_response(schemas.SlotList(items=[schemas.SlotOut(**slot.__dict__) for slot in found]))


async def _editable_physician(request: web.Request) -> uuid.UUID:
    """Physicians edit their own hours; admins anyone's. Others: 404 (or 403 by role, before this)."""
    physician_id = path_uuid(request, "physician_id")
    viewer = await viewer_for(request)
    if viewer.role is Role.physician and viewer.physician_id != physician_id:
        raise NotFound()
    return physician_id


async def _availability_out(request: web.Request, physician_id: uuid.UUID,
                            affected: list[Consultation] | None = None) -> schemas.AvailabilityOut:
    async with read(request) as session:
        doctor, _ = await availability.physician(session, physician_id)
        zone = ZoneInfo(doctor.time_zone)
        weekly = await availability.weekly_availability(session, physician_id=physician_id)
        extra = await availability.exceptions(session, physician_id=physician_id,
                                              since=utcnow().astimezone(zone).date())
        views = [await queries.view(session, c.id) for c in affected or []]
    return schemas.AvailabilityOut(
        physician_id=physician_id, time_zone=doctor.time_zone,
        weekly=[schemas.HoursOut(weekday=r.weekday, start=r.start_time, end=r.end_time, slot_minutes=r.slot_minutes)
                for r in weekly],
        exceptions=[schemas.ExceptionOut(id=e.id, day=e.day, kind=e.kind.value, start=e.start_time, end=e.end_time,
                                         slot_minutes=e.slot_minutes) for e in extra],
        affected=[consultation_out(v) for v in views])


@router.route("GET", "/api/v1/physicians/{physician_id}/availability", summary="A physician's hours",
              response=schemas.AvailabilityOut, roles=[Role.physician, Role.admin], errors=(404,))
async def get_availability(request: web.Request) -> web.Response:
    return json_response(await _availability_out(request, await _editable_physician(request)))


@router.route("PUT", "/api/v1/physicians/{physician_id}/availability", summary="Set the weekly hours",
              body=schemas.WeeklyHoursIn, response=schemas.AvailabilityOut, roles=[Role.physician, Role.admin],
              errors=(404,))
async def set_availability(request: web.Request, body: schemas.WeeklyHoursIn) -> web.Response:
    """Bookings the new hours no longer cover are kept, flagged and listed in `affected` for rescheduling."""
    physician_id = await _editable_physician(request)
    hours = [rules.WeeklyHours(r.weekday, rules.Hours(r.start, r.end, r.slot_minutes)) for r in body.ranges]
    async with tx(request) as session:
        affected = await availability.replace_weekly_hours(
            session, physician_id=physician_id, hours=hours, ctx=audit_context(request), now=utcnow(),
            weeks=request.app[keys.settings].booking_weeks_ahead)
    return json_response(await _availability_out(request, physician_id, affected))


@router.route("POST", "/api/v1/physicians/{physician_id}/availability/exceptions",
              summary="Add a day off or extra hours", body=schemas.ExceptionIn, response=schemas.AvailabilityOut,
              status=201, roles=[Role.physician, Role.admin], errors=(404,))
async def add_exception(request: web.Request, body: schemas.ExceptionIn) -> web.Response:
    physician_id = await _editable_physician(request)
    hours = rules.Hours(body.start, body.end, body.slot_minutes) if body.start and body.end else None
    async with tx(request) as session:
        _, affected = await availability.add_exception(
            session, physician_id=physician_id, day=body.day, kind=ExceptionKind(body.kind), hours=hours,
            ctx=audit_context(request), now=utcnow(), weeks=request.app[keys.settings].booking_weeks_ahead)
    return json_response(await _availability_out(request, physician_id, affected), status=201)


@router.route("DELETE", "/api/v1/physicians/{physician_id}/availability/exceptions/{exception_id}",
              summary="Remove a day off or extra hours", response=schemas.AvailabilityOut,
              roles=[Role.physician, Role.admin], errors=(404,))
async def remove_exception(request: web.Request) -> web.Response:
    physician_id = await _editable_physician(request)
    async with tx(request) as session:
        affected = await availability.remove_exception(
            session, physician_id=physician_id, exception_id=path_uuid(request, "exception_id"),
            ctx=audit_context(request), now=utcnow(), weeks=request.app[keys.settings].booking_weeks_ahead)
    return json_response(await _availability_out(request, physician_id, affected))


@router.route("GET", "/api/v1/conditions", summary="Conditions the clinic treats by teleconsultation",
              response=schemas.ConditionList)
async def list_conditions(request: web.Request) -> web.Response:
    async with read(request) as session:
        found = await conditions.current_conditions(session)
    return json_response(schemas.ConditionList(items=[schemas.ConditionOut.model_validate(c) for c in found]))


@router.route("GET", "/api/v1/conditions/{code}/questionnaire", summary="The screening to answer for a condition",
              response=schemas.QuestionnaireOut, errors=(422,))
async def condition_questionnaire(request: web.Request) -> web.Response:
    async with read(request) as session:
        condition = await conditions.current_condition(session, request.match_info["code"])
        questionnaire = await conditions.current_questionnaire(session, condition.questionnaire_code)
    return json_response(schemas.QuestionnaireOut(code=questionnaire.code, version=questionnaire.version,
                                                  definition=questionnaire.definition))


@router.route("GET", "/api/v1/questionnaires/checkin", summary="The short screening repeated at check-in",
              response=schemas.QuestionnaireOut)
async def checkin_questionnaire(request: web.Request) -> web.Response:
    async with read(request) as session:
        questionnaire = await conditions.current_questionnaire(session, "checkin")
    return json_response(schemas.QuestionnaireOut(code=questionnaire.code, version=questionnaire.version,
                                                  definition=questionnaire.definition))


class ConditionIn(ConditionEntry):
    """A catalogue entry as an admin saves it (a new version when the code exists)."""

    active: bool = True


@router.route("POST", "/api/v1/admin/conditions", summary="Add a condition, or a new version of one",
              body=ConditionIn, response=schemas.ConditionOut, status=201, roles=[Role.admin], errors=(422,))
async def save_condition(request: web.Request, body: ConditionIn) -> web.Response:
    async with tx(request) as session:
        saved = await conditions.save_condition(session, entry=body, active=body.active, ctx=audit_context(request),
                                                now=utcnow())
    return json_response(schemas.ConditionOut.model_validate(saved), status=201)


@router.route("POST", "/api/v1/admin/questionnaires", summary="Publish a new version of a questionnaire",
              body=QuestionnaireDefinition, response=schemas.QuestionnaireOut, status=201, roles=[Role.admin])
async def publish_questionnaire(request: web.Request, body: QuestionnaireDefinition) -> web.Response:
    """The version number is assigned (after the latest); earlier versions stay with their consultations."""
    async with tx(request) as session:
        published = await conditions.publish_questionnaire(session, definition=body, ctx=audit_context(request),
                                                           now=utcnow())
    return json_response(schemas.QuestionnaireOut(code=published.code, version=published.version,
                                                  definition=published.definition), status=201)


@router.route("POST", "/api/v1/patients/{patient_id}/diagnoses",
              summary="Record an in-person diagnosis (allows repeat teleconsultations)", body=schemas.DiagnosisIn,
              response=schemas.DiagnosisOut, status=201, roles=[Role.physician, Role.admin], errors=(404, 422))
async def record_diagnosis(request: web.Request, body: schemas.DiagnosisIn) -> web.Response:
    patient_id = path_uuid(request, "patient_id")
    async with tx(request) as session:
        if await session.get(Patient, patient_id) is None:
            raise NotFound()
        diagnosis = await conditions.record_diagnosis(session, patient_id=patient_id,
                                                      condition_code=body.condition_code,
                                                      diagnosed_on=body.diagnosed_on, ctx=audit_context(request),
                                                      now=utcnow())
    return json_response(schemas.DiagnosisOut(id=diagnosis.id, patient_id=patient_id,
                                              condition_code=diagnosis.condition_code,
                                              diagnosed_on=diagnosis.diagnosed_on), status=201)

