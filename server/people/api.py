"""REST endpoints for registration, one's own profile, patients, physicians and staff accounts."""

from __future__ import annotations

from aiohttp import web

from server import keys
from server.auth.models import Role, User
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import path_uuid
from server.http.principal import audit_context, authenticate
from server.http.problems import NotFound
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.http.signin import allow_registration
from server.people import schemas, services
from server.people.models import Physician

router = ApiRouter("people")


def user_out(user: User) -> schemas.UserOut:
    return schemas.UserOut(id=user.id, email=user.email, role=user.role.value, full_name=user.full_name,
                           locale=user.locale, mfa_enabled=user.totp_enabled_at is not None,
                           created_at=user.created_at)


def physician_out(physician: Physician, user: User) -> schemas.PhysicianOut:
    return schemas.PhysicianOut(id=physician.id, full_name=user.full_name, specialty=physician.specialty,
                                licence_number=physician.licence_number, time_zone=physician.time_zone,
                                department=physician.department)


def me_out(found: services.Profile) -> schemas.MeOut:
    user = found.user
    return schemas.MeOut(
        user=user_out(user),
        patient=schemas.PatientOut(id=found.patient.id, full_name=user.full_name, email=user.email,
                                   birth_date=found.patient.birth_date, phone=found.patient.phone)
        if found.patient else None,
        physician=physician_out(found.physician, user) if found.physician else None,
        qa_expert=schemas.QaExpertOut(id=found.qa_expert.id, full_name=user.full_name,
                                      specialty=found.qa_expert.specialty, department=found.qa_expert.department,
                                      practises_as=found.qa_expert.physician_id) if found.qa_expert else None,
    )


@router.route("POST", "/api/v1/auth/register", summary="A patient creates their account",
              body=schemas.RegisterIn, response=schemas.MeOut, status=201, public=True, errors=(409,))
async def register(request: web.Request, body: schemas.RegisterIn) -> web.Response:
    await allow_registration(request)
    async with tx(request) as session:
        user, _ = await services.register_patient(
            session, passwords=request.app[keys.passwords], email=body.email, password=body.password,
            full_name=body.full_name, birth_date=body.birth_date, phone=body.phone, locale=body.locale,
            ctx=audit_context(request), now=utcnow(), snils=body.snils,
        )
        found = await services.profile(session, user_id=user.id)
    return json_response(me_out(found), status=201)


@router.route("GET", "/api/v1/me", summary="The signed-in user and their profile", response=schemas.MeOut,
              allow_mfa_pending=True)
async def me(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    async with read(request) as session:
        found = await services.profile(session, user_id=principal.user_id)
    return json_response(me_out(found))


@router.route("PUT", "/api/v1/me/notifications", summary="Choose how to be reminded (patients)",
              body=schemas.NotificationChoiceIn, response=schemas.NotificationChoiceOut, roles=[Role.patient])
async def choose_channels(request: web.Request, body: schemas.NotificationChoiceIn) -> web.Response:
    principal = await authenticate(request)
    if principal.patient_id is None:
        raise NotFound()
    async with tx(request) as session:
        patient = await services.choose_channels(session, patient_id=principal.patient_id, email=body.email,
                                                 sms=body.sms, ctx=audit_context(request), now=utcnow())
    return json_response(schemas.NotificationChoiceOut(email=patient.notify_email, sms=patient.notify_sms))


@router.route("GET", "/api/v1/patients/{patient_id}", summary="A patient's profile",
              response=schemas.PatientOut, roles=[Role.patient, Role.admin], errors=(404,))
async def get_patient(request: web.Request) -> web.Response:
    """A patient may read only their own profile; any other id answers 404. Every read is audited."""
    principal = await authenticate(request)
    patient_id = path_uuid(request, "patient_id")
    async with tx(request) as session:
        patient, user = await services.read_patient(
            session, viewer_role=principal.role, viewer_patient_id=principal.patient_id, patient_id=patient_id,
            ctx=audit_context(request), now=utcnow(),
        )
    return json_response(schemas.PatientOut(id=patient.id, full_name=user.full_name, email=user.email,
                                            birth_date=patient.birth_date, phone=patient.phone))


@router.route("GET", "/api/v1/physicians", summary="Physicians offering teleconsultations",
              response=schemas.PhysicianList)
async def list_physicians(request: web.Request) -> web.Response:
    async with read(request) as session:
        rows = await services.list_physicians(session)
    return json_response(schemas.PhysicianList(items=[physician_out(p, u) for p, u in rows]))


@router.route("GET", "/api/v1/physicians/me", summary="The signed-in physician's own profile",
              response=schemas.PhysicianOut, roles=[Role.physician])
async def my_physician_profile(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    async with read(request) as session:
        found = await services.profile(session, user_id=principal.user_id)
    physician = found.physician
    if physician is None:  # the role guarantees a physician row; never fail open
        raise NotFound()
    return json_response(physician_out(physician, found.user))


@router.route("POST", "/api/v1/admin/users", summary="Create a staff account (admins)",
              body=schemas.StaffCreateIn, response=schemas.UserOut, status=201, roles=[Role.admin],
              errors=(409,))
async def create_staff(request: web.Request, body: schemas.StaffCreateIn) -> web.Response:
    async with tx(request) as session:
        user = await services.create_staff(
            session, passwords=request.app[keys.passwords], role=Role(body.role), email=body.email,
            password=body.password, full_name=body.full_name, locale=body.locale, specialty=body.specialty,
            licence_number=body.licence_number, time_zone=body.time_zone, department=body.department,
            practises_as=body.practises_as, ctx=audit_context(request),
            now=utcnow(),
        )
    return json_response(user_out(user), status=201)


@router.route("GET", "/api/v1/admin/users", summary="List accounts (admins)", query=schemas.UserListQuery,
              response=schemas.UserList, roles=[Role.admin])
async def list_users(request: web.Request, query: schemas.UserListQuery) -> web.Response:
    async with tx(request) as session:
        users = await services.list_users(session, role=Role(query.role) if query.role else None,
                                          limit=query.limit, offset=query.offset, ctx=audit_context(request),
                                          now=utcnow())
    return json_response(schemas.UserList(items=[user_out(u) for u in users]))
