"""The read-only FHIR R4 API at /fhir/R4: reads, searches by patient, Patient/$everything, the capability statement.

Everything served is in `REGISTRY`: each resource type brings a loader for one resource and one for a patient's
resources, and the routes, the capability statement, $everything and the OpenAPI paths are all generated from it
(docs/fhir.md, "Adding a resource type"). Loaders only load and map; access and auditing are decided here, once:
the caller must be allowed the type (its roles) and the patient (the same rule as consents), and every read of a
patient's data is an audit entry.

This module sits above the domains it exports (it reads consent's tables), and only the composition root imports it.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from fhir.resources.R4B.resource import Resource
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import signing
from consent.models import Consent, ConsentDocument
from consent.problems import ConsentDamaged
from qa_audit import fhir as qa_fhir
from server import keys
from server.audit import services as audit
from server.audit.models import AuditEntry
from server.auth.models import Role, User
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import Principal, audit_context, authenticate, check_access
from server.http.problems import Forbidden, NotFound, ProblemError
from server.people.models import Patient, Physician
from server.records import fhir, fhir_documents
from server.scheduling.models import ConditionVersion, Consultation, Questionnaire

log = structlog.get_logger("telemed.fhir")
PREFIX = "/fhir/R4"
FHIR_JSON = "application/fhir+json"
CARE_ROLES = frozenset({Role.patient, Role.physician, Role.admin})
# The access log is the patient's (their right to know) and the clinic's (oversight); treating needs none of it.
RECORD_KEEPERS = frozenset({Role.patient, Role.admin})
REGISTRY = fhir.Registry()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# --- Loaders: one resource by id, and a patient's resources -----------------------------------------------------------


async def read_patient(session: AsyncSession, ctx: fhir.Context, resource_id: str) -> fhir.Found | None:
    patient_id = _uuid(resource_id)
    if patient_id is None:
        return None
    row = (await session.execute(select(Patient, User).join(User, User.id == Patient.user_id)
                                 .where(Patient.id == patient_id))).one_or_none()
    if row is None:
        return None
    found, user = row
    return fhir.Found(found.id, lambda: fhir.patient(found, user, clinic=ctx.clinic))


async def search_patients(session: AsyncSession, ctx: fhir.Context, patient_id: uuid.UUID) -> list[Resource]:
    found = await read_patient(session, ctx, str(patient_id))
    return [found.build()] if found else []


async def read_practitioner(session: AsyncSession, ctx: fhir.Context, resource_id: str) -> fhir.Found | None:
    physician_id = _uuid(resource_id)
    if physician_id is None:
        return None
    row = (await session.execute(select(Physician, User).join(User, User.id == Physician.user_id)
                                 .where(Physician.id == physician_id))).one_or_none()
    if row is None:
        return None
    physician, user = row
    # Nobody's health data: every signed-in user may list the physicians anyway.
    return fhir.Found(None, lambda: fhir.practitioner(physician, user, clinic=ctx.clinic))


async def search_practitioners(session: AsyncSession, ctx: fhir.Context, patient_id: uuid.UUID) -> list[Resource]:
    rows = (await session.execute(
        select(Physician, User).join(User, User.id == Physician.user_id)
        .where(Physician.id.in_(select(Consultation.physician_id).where(Consultation.patient_id == patient_id)))
        .order_by(Physician.id))).all()
    return [fhir.practitioner(physician, user, clinic=ctx.clinic) for physician, user in rows]


async def _consultations(session: AsyncSession, *, consultation_id: uuid.UUID | None = None,
                         patient_id: uuid.UUID | None = None) -> list[tuple[Consultation, ConditionVersion]]:
    query = select(Consultation, ConditionVersion).join(ConditionVersion,
                                                        ConditionVersion.id == Consultation.condition_id)
    if consultation_id is not None:
        query = query.where(Consultation.id == consultation_id)
    if patient_id is not None:
        query = query.where(Consultation.patient_id == patient_id)
    rows = (await session.execute(query.order_by(Consultation.starts_at, Consultation.id))).all()
    return [(consultation, condition) for consultation, condition in rows]


def _consultation_loaders(mapping: Callable[..., Resource]) -> tuple[fhir.ReadFn, fhir.SearchFn]:
    """Appointment and Encounter are two views of one consultation, under the consultation's id."""
    async def read(session: AsyncSession, ctx: fhir.Context, resource_id: str) -> fhir.Found | None:
        consultation_id = _uuid(resource_id)
        rows = await _consultations(session, consultation_id=consultation_id) if consultation_id else []
        if not rows:
            return None
        consultation, condition = rows[0]
        return fhir.Found(consultation.patient_id, lambda: mapping(consultation, condition, clinic=ctx.clinic,
                                                                   locale=ctx.locale))

    async def search(session: AsyncSession, ctx: fhir.Context, patient_id: uuid.UUID) -> list[Resource]:
        return [mapping(consultation, condition, clinic=ctx.clinic, locale=ctx.locale)
                for consultation, condition in await _consultations(session, patient_id=patient_id)]

    return read, search


read_appointment, search_appointments = _consultation_loaders(fhir.appointment)
read_encounter, search_encounters = _consultation_loaders(fhir.encounter)


@dataclass(frozen=True)
class _Screening:
    consultation: Consultation
    stage: str
    questionnaire: Questionnaire
    answers: dict[str, Any]
    authored: dt.datetime

    def build(self, ctx: fhir.Context) -> Resource:
        return fhir.questionnaire_response(self.consultation, stage=self.stage, questionnaire=self.questionnaire,
                                           answers=self.answers, authored=self.authored, clinic=ctx.clinic,
                                           locale=ctx.locale)


async def _screenings(session: AsyncSession, consultations: Sequence[Consultation]) -> list[_Screening]:
    """Each screening the consultations had: at booking always, at check-in once the patient checked in."""
    found = []
    for c in consultations:
        found.append((c, "booking", c.questionnaire_id, c.screening_answers, c.created_at))
        if c.checkin_answers is not None and c.checkin_questionnaire_id is not None:
            found.append((c, "checkin", c.checkin_questionnaire_id, c.checkin_answers, c.checked_in_at or c.created_at))
    ids = {questionnaire_id for _, _, questionnaire_id, _, _ in found}
    questionnaires = {q.id: q for q in await session.scalars(select(Questionnaire).where(Questionnaire.id.in_(ids)))}
    return [_Screening(c, stage, questionnaires[questionnaire_id], answers, authored)
            for c, stage, questionnaire_id, answers, authored in found]


async def read_questionnaire_response(session: AsyncSession, ctx: fhir.Context, resource_id: str) -> fhir.Found | None:
    if resource_id.startswith(qa_fhir.ID_PREFIX):  # a QA review (qa-<id>), not a screening (<consultation>-<stage>)
        export = await qa_fhir.load_done(session, resource_id)
        if export is None:
            return None
        return fhir.Found(export.patient_id, lambda: qa_fhir.questionnaire_response(
            export, base_url=ctx.clinic.base_url, locale=ctx.locale, name_expert=ctx.role != "physician"),
            may_read=qa_fhir.reader(export))
    parsed = fhir.parse_questionnaire_response_id(resource_id)
    consultation = await session.get(Consultation, parsed[0]) if parsed else None
    if parsed is None or consultation is None:
        return None
    screening = next((s for s in await _screenings(session, [consultation]) if s.stage == parsed[1]), None)
    if screening is None:
        return None
    return fhir.Found(consultation.patient_id, lambda: screening.build(ctx))


async def search_questionnaire_responses(session: AsyncSession, ctx: fhir.Context,
                                         patient_id: uuid.UUID) -> list[Resource]:
    consultations = [c for c, _ in await _consultations(session, patient_id=patient_id)]
    return [screening.build(ctx) for screening in await _screenings(session, consultations)]


def _consent_builder(consent: Consent, pdf: bytes, ctx: fhir.Context) -> Callable[[], Resource]:
    def build() -> Resource:
        try:
            return fhir.consent(consent, pdf=pdf, clinic=ctx.clinic)
        except ValueError:  # the stored PDF no longer matches the hash that was signed: nothing trustworthy to send
            raise ConsentDamaged() from None
    return build


async def read_consent(session: AsyncSession, ctx: fhir.Context, resource_id: str) -> fhir.Found | None:
    consent_id = _uuid(resource_id)
    if consent_id is None:
        return None
    row = (await session.execute(select(Consent, ConsentDocument.pdf)
                                 .join(ConsentDocument, ConsentDocument.id == Consent.document_id)
                                 .where(Consent.id == consent_id))).one_or_none()
    if row is None:
        return None
    return fhir.Found(row[0].patient_id, _consent_builder(row[0], row[1], ctx))


async def search_consents(session: AsyncSession, ctx: fhir.Context, patient_id: uuid.UUID) -> list[Resource]:
    rows = (await session.execute(select(Consent, ConsentDocument.pdf)
                                  .join(ConsentDocument, ConsentDocument.id == Consent.document_id)
                                  .where(Consent.patient_id == patient_id)
                                  .order_by(Consent.signed_at, Consent.id))).all()
    found: list[Resource] = []
    for consent, pdf in rows:
        try:
            found.append(_consent_builder(consent, pdf, ctx)())
        except ConsentDamaged as damaged:  # one damaged consent must not hide the rest of the record
            found.append(fhir.operation_outcome(status=damaged.status, code=damaged.code, title=damaged.title,
                                                detail=f"Consent/{consent.id} is not exported", severity="warning"))
    return found


def _audit_rows() -> Any:  # a Select of three columns
    return (select(AuditEntry, Patient.id, Physician.id)
            .outerjoin(Patient, Patient.user_id == AuditEntry.actor_user_id)
            .outerjoin(Physician, Physician.user_id == AuditEntry.actor_user_id)
            .where(AuditEntry.subject_patient_id.is_not(None)))


def _audit_event(row: Any, ctx: fhir.Context) -> Resource:
    entry, actor_patient_id, actor_physician_id = row
    actor = fhir.AuditActor(entry.actor_user_id, entry.actor_role, actor_patient_id, actor_physician_id)
    return fhir.audit_event(entry, actor=actor, clinic=ctx.clinic)


async def read_audit_event(session: AsyncSession, ctx: fhir.Context, resource_id: str) -> fhir.Found | None:
    if not (resource_id.isascii() and resource_id.isdigit()) or len(resource_id) > 18:
        return None
    row = (await session.execute(_audit_rows().where(AuditEntry.seq == int(resource_id)))).one_or_none()
    if row is None:
        return None
    return fhir.Found(row[0].subject_patient_id, lambda: _audit_event(row, ctx))


async def search_audit_events(session: AsyncSession, ctx: fhir.Context, patient_id: uuid.UUID) -> list[Resource]:
    rows = (await session.execute(_audit_rows().where(AuditEntry.subject_patient_id == patient_id)
                                  .order_by(AuditEntry.seq))).all()
    return [_audit_event(row, ctx) for row in rows]


REGISTRY.add(fhir.ResourceType(
    "Patient", read_patient, search_patients,
    search_param=fhir.SearchParam("_id", "token", "The patient's id; required, one value",
                                  "http://hl7.org/fhir/SearchParameter/Resource-id"),
    operations=(("everything", fhir.EVERYTHING),)))
REGISTRY.add(fhir.ResourceType(
    "Practitioner", read_practitioner, search_practitioners,
    search_param=fhir.SearchParam("patient", "reference", "Not a standard Practitioner parameter: the physicians of "
                                  "this patient's consultations (`Patient/{id}` or `{id}`); required, one value")))
REGISTRY.add(fhir.ResourceType("Appointment", read_appointment, search_appointments))
REGISTRY.add(fhir.ResourceType("Encounter", read_encounter, search_encounters))
# Screenings (the patient's) and QA reviews (`qa-<id>`: the clinic's; read only, never in a patient's searches).
REGISTRY.add(fhir.ResourceType("QuestionnaireResponse", read_questionnaire_response, search_questionnaire_responses,
                               roles=CARE_ROLES | {Role.qa_expert}))
REGISTRY.add(fhir.ResourceType("Consent", read_consent, search_consents))
REGISTRY.add(fhir.ResourceType("AuditEvent", read_audit_event, search_audit_events, roles=RECORD_KEEPERS))
REGISTRY.add(fhir.ResourceType("DocumentReference", fhir_documents.read_document_reference,
                               fhir_documents.search_document_references))


# --- Access -----------------------------------------------------------------------------------------------------------


async def may_see_patient(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> bool:
    """The consent rule: the patient themself, an admin, a physician with a booking (not cancelled) with them.

    Admins get False for a patient that does not exist, so an empty search is not an audited read of nobody.
    """
    if principal.role is Role.admin:
        return await session.get(Patient, patient_id) is not None
    actor = signing.Actor(principal.user_id, principal.role, principal.patient_id)
    return await signing.may_act_for(session, actor, patient_id)


async def _may_see(session: AsyncSession, principal: Principal, patient_id: uuid.UUID | None) -> bool:
    return patient_id is None or await may_see_patient(session, principal, patient_id)


async def _caller(request: web.Request, roles: frozenset[Role]) -> Principal:
    principal = await authenticate(request)
    check_access(principal, roles=roles, allow_mfa_pending=False,
                 admin_mfa_required=request.app[keys.settings].admin_mfa_required)
    return principal


def _context(request: web.Request, principal: Principal | None = None) -> fhir.Context:
    settings = request.app[keys.settings]
    return fhir.Context(fhir.Clinic(settings.public_url, settings.clinic_name),
                        locale=principal.locale if principal else "en",
                        role=principal.role.value if principal else None)


# --- Responses and errors ---------------------------------------------------------------------------------------------


def _respond(resource: Resource, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Health data: no cache keeps a copy (the API's no-store covers /api/ only).
    return web.Response(text=resource.model_dump_json(exclude_none=True), status=status, content_type=FHIR_JSON,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _outcomes(handler: Handler) -> Handler:
    """Errors leave as OperationOutcome, which FHIR clients understand, instead of the API's problem documents."""
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProblemError as error:
            outcome = fhir.operation_outcome(status=error.status, code=error.code, title=error.title,
                                             detail=error.detail)
            return _respond(outcome, status=error.status, headers=error.headers)
        except Exception:
            # The route pattern, never the path: paths carry patients' ids.
            resource = request.match_info.route.resource
            log.exception("unhandled_error", route=resource.canonical if resource else "unmatched",
                          method=request.method)
            outcome = fhir.operation_outcome(status=500, code="internal_error", title="Internal error",
                                             detail="Something went wrong on our side; the X-Request-ID header "
                                                    "identifies it for the clinic's support.")
            return _respond(outcome, status=500)
    return wrapped


class BadSearch(ProblemError):
    status, code, title = 400, "bad_search", "The search parameters are not valid here"


_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})


def _params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query as single values: unknown, repeated or empty parameters are refused, never silently ignored."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed | {"_format"}:
            raise BadSearch(f"Unsupported parameter {name!r}; this server supports: {', '.join(sorted(allowed))}")
        if name in params:
            raise BadSearch(f"Give {name!r} once")
        if not value:
            raise BadSearch(f"{name!r} is empty")
        params[name] = value
    if params.pop("_format", "json") not in _FORMATS:
        raise BadSearch("Only JSON is served (_format=json)")
    return params


def _search_patient(request: web.Request, resource_type: fhir.ResourceType) -> uuid.UUID:
    name = resource_type.search_param.name
    value = _params(request, frozenset({name})).get(name)
    if value is None:
        raise BadSearch(f"Searching {resource_type.name} needs {name!r}: results are always one patient's")
    if "," in value:
        raise BadSearch(f"Give one patient in {name!r}")
    if name != "_id" and value.startswith("Patient/"):
        value = value.removeprefix("Patient/")
    patient_id = _uuid(value)
    if patient_id is None:
        raise BadSearch(f"{name!r} is not a patient id")
    return patient_id


def _self_url(request: web.Request, ctx: fhir.Context) -> str:
    return f"{ctx.clinic.base_url.rstrip('/')}{request.rel_url}"


# --- Handlers ---------------------------------------------------------------------------------------------------------


def _read_handler(resource_type: fhir.ResourceType) -> Handler:
    async def read(request: web.Request) -> web.StreamResponse:
        principal = await _caller(request, resource_type.roles)
        ctx, resource_id = _context(request, principal), request.match_info["id"]
        async with tx(request) as session:
            found = await resource_type.read(session, ctx, resource_id)
            if found is None or not await (
                    found.may_read(session, principal.user_id, principal.role) if found.may_read is not None
                    else _may_see(session, principal, found.patient_id)):
                raise NotFound()
            resource = found.build()
            if found.patient_id is not None:
                await audit.record(session, ctx=audit_context(request), action="fhir.read",
                                   object_type=resource_type.name, object_id=resource_id,
                                   subject_patient_id=found.patient_id, now=utcnow())
        return _respond(resource)

    read.__name__ = read.__qualname__ = f"read_{resource_type.name}"
    read.__doc__ = f"One {resource_type.name}; another person's answers 404. Reads of patient data are audited."
    return _outcomes(read)


def _search_handler(resource_type: fhir.ResourceType) -> Handler:
    async def search(request: web.Request) -> web.StreamResponse:
        principal = await _caller(request, resource_type.roles)
        patient_id = _search_patient(request, resource_type)
        ctx = _context(request, principal)
        found: list[Resource] = []
        async with tx(request) as session:
            # A patient one may not see looks exactly like one who does not exist: an empty result.
            if await may_see_patient(session, principal, patient_id):
                found = list(await resource_type.search(session, ctx, patient_id))
                await audit.record(session, ctx=audit_context(request), action="fhir.search", object_type="patient",
                                   object_id=patient_id, subject_patient_id=patient_id, now=utcnow(),
                                   detail={"resource_type": resource_type.name, "count": len(found)})
        return _respond(fhir.searchset(found, clinic=ctx.clinic, self_url=_self_url(request, ctx), now=utcnow()))

    search.__name__ = search.__qualname__ = f"search_{resource_type.name}"
    search.__doc__ = f"One patient's {resource_type.name} resources (a searchset Bundle). Audited."
    return _outcomes(search)


def _everything_handler(registry: fhir.Registry) -> Handler:
    async def everything(request: web.Request) -> web.StreamResponse:
        principal = await _caller(request, CARE_ROLES)
        types = [t for t in registry if t.in_everything]
        asked = _params(request, frozenset({"_type"})).get("_type")
        if asked is not None:
            names = asked.split(",")
            unknown = [name for name in names if name not in {t.name for t in types}]
            if unknown:
                raise BadSearch(f"_type names types this server does not serve: {', '.join(unknown)}")
            types = [t for t in types if t.name in names]
            if any(principal.role not in t.roles for t in types):
                raise Forbidden("Your role may not read every type asked for", code="role_forbidden")
        types = [t for t in types if principal.role in t.roles]
        patient_id, ctx = _uuid(request.match_info["id"]), _context(request, principal)
        found: list[Resource] = []
        counts: dict[str, int] = {}
        async with tx(request) as session:
            if patient_id is None or not await may_see_patient(session, principal, patient_id):
                raise NotFound()
            for resource_type in types:
                part = await resource_type.search(session, ctx, patient_id)
                found.extend(part)
                counts[resource_type.name] = len(part)
            await audit.record(session, ctx=audit_context(request), action="fhir.everything", object_type="patient",
                               object_id=patient_id, subject_patient_id=patient_id, now=utcnow(),
                               detail={"counts": counts})
        return _respond(fhir.searchset(found, clinic=ctx.clinic, self_url=_self_url(request, ctx), now=utcnow()))

    return _outcomes(everything)


def _software_version() -> str:
    try:
        return importlib.metadata.version("telemed")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _metadata_handler(registry: fhir.Registry) -> Handler:
    async def metadata(request: web.Request) -> web.StreamResponse:
        """Public, as FHIR clients read it before signing in; it says what is served, nothing about anyone."""
        ctx = _context(request)
        return _respond(fhir.capability_statement(registry, clinic=ctx.clinic, software_version=_software_version(),
                                                  now=utcnow()))

    return _outcomes(metadata)


async def _unsupported(request: web.Request) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise ProblemError("This FHIR server is read-only", status=405, code="method_not_allowed",
                           title="Method not allowed", headers={"Allow": "GET, HEAD"})
    raise NotFound("This FHIR server does not serve that resource type or interaction; see /fhir/R4/metadata")


def setup(app: web.Application, registry: fhir.Registry = REGISTRY) -> None:
    """Route every registered type, $everything and metadata; anything else under /fhir/ is an OperationOutcome."""
    for resource_type in registry:
        path = f"{PREFIX}/{resource_type.name}"
        app.router.add_get(path, _search_handler(resource_type), name=f"fhir.search_{resource_type.name}")
        app.router.add_get(path + "/{id}", _read_handler(resource_type), name=f"fhir.read_{resource_type.name}")
    app.router.add_get(f"{PREFIX}/Patient/{{id}}/$everything", _everything_handler(registry), name="fhir.everything")
    app.router.add_get(f"{PREFIX}/metadata", _metadata_handler(registry), name="fhir.metadata")
    app.router.add_route("*", "/fhir/{tail:.*}", _outcomes(_unsupported), name="fhir.unsupported")


# --- OpenAPI ----------------------------------------------------------------------------------------------------------


def _json(description: str) -> dict[str, Any]:
    schema = {"type": "object", "description": description, "properties": {"resourceType": {"type": "string"}},
              "externalDocs": {"url": "https://hl7.org/fhir/R4/resourcelist.html"}}
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


_ERRORS = {"400": "Bad search parameters (OperationOutcome)", "401": "Not signed in (OperationOutcome)",
           "403": "Role not allowed (OperationOutcome)", "404": "Not found, or not yours (OperationOutcome)"}


def _operation(operation_id: str, summary: str, roles: frozenset[Role] | None, errors: Sequence[str],
               parameters: list[dict[str, Any]], success: str) -> dict[str, Any]:
    responses = {"200": _json(success), **{code: _json(_ERRORS[code]) for code in errors}}
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": ["fhir"],
                                 "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if roles is None:
        operation["security"] = []
    else:
        operation["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
        operation["x-roles"] = sorted(role.value for role in roles)
    return operation


_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": r"^[A-Za-z0-9\-.]{1,64}$"}}


def openapi_paths(registry: fhir.Registry = REGISTRY) -> dict[str, Any]:
    """The FHIR routes for /api/openapi.json: bodies are FHIR JSON, errors OperationOutcome (not problem documents)."""
    paths: dict[str, Any] = {}
    for t in registry:
        param = t.search_param
        paths[f"{PREFIX}/{t.name}"] = {"get": _operation(
            f"fhir_search_{t.name}", f"Search one patient's {t.name} resources", t.roles, ("400", "401", "403"),
            [{"name": param.name, "in": "query", "required": True, "description": param.documentation,
              "schema": {"type": "string"}}], "A searchset Bundle")}
        paths[f"{PREFIX}/{t.name}/{{id}}"] = {"get": _operation(
            f"fhir_read_{t.name}", f"Read one {t.name}", t.roles, ("401", "403", "404"), [_ID], f"A {t.name}")}
    paths[f"{PREFIX}/Patient/{{id}}/$everything"] = {"get": _operation(
        "fhir_patient_everything", "Everything about one patient the caller may see", CARE_ROLES,
        ("400", "401", "403", "404"),
        [_ID, {"name": "_type", "in": "query", "required": False, "schema": {"type": "string"},
               "description": "Comma-separated resource types to include"}], "A searchset Bundle")}
    paths[f"{PREFIX}/metadata"] = {"get": _operation("fhir_metadata", "The CapabilityStatement", None, (), [],
                                                     "A CapabilityStatement")}
    return paths
