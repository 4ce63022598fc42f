"""Our records as FHIR R4 resources, and the registry of the resource types the FHIR API serves.

Pure: every function takes rows already loaded and returns `fhir.resources.R4B` objects, which validate on
construction, so nothing leaves the service that a FHIR parser would refuse. (The R4B models are R4's for
every type served here.) Loading, access and auditing live in `fhir_api.py`; adding a resource type means a
mapping function here and one `Registry.add` there (docs/fhir.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent as FhirConsent
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from consent import fhir as consent_fhir
from server.auth.models import Role, User
from server.people.models import Patient, Physician
from server.scheduling.models import ConditionVersion, Consultation, ConsultationKind, ConsultationStatus, Questionnaire
from server.scheduling.screening import Question, QuestionnaireDefinition

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from consent.models import Consent
    from server.audit.models import AuditEntry

FHIR_VERSION = "4.0.1"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
BCP47 = "urn:ietf:bcp:47"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
PROBLEM_SYSTEM = "urn:telemed:problem"
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"

# Our consultation states (ARCHITECTURE.md) in FHIR's two views of them: the booking and the visit itself.
APPOINTMENT_STATUS: Mapping[ConsultationStatus, str] = {
    ConsultationStatus.scheduled: "booked",
    ConsultationStatus.waiting: "arrived",  # checked in, in the waiting room
    ConsultationStatus.in_call: "arrived",  # the visit is under way: the Encounter says so
    ConsultationStatus.interrupted: "arrived",  # may resume
    ConsultationStatus.completed: "fulfilled",
    ConsultationStatus.documented: "fulfilled",
    ConsultationStatus.cancelled: "cancelled",
    ConsultationStatus.no_show: "noshow",
    ConsultationStatus.refused: "cancelled",  # screening stopped it
}
ENCOUNTER_STATUS: Mapping[ConsultationStatus, str] = {
    ConsultationStatus.scheduled: "planned",
    ConsultationStatus.waiting: "arrived",
    ConsultationStatus.in_call: "in-progress",
    ConsultationStatus.interrupted: "onleave",  # begun, the patient temporarily away: a dropped call may resume
    ConsultationStatus.completed: "finished",
    ConsultationStatus.documented: "finished",
    ConsultationStatus.cancelled: "cancelled",
    ConsultationStatus.no_show: "cancelled",
    ConsultationStatus.refused: "cancelled",
}
APPOINTMENT_KIND: Mapping[ConsultationKind, tuple[str, str]] = {
    ConsultationKind.primary: ("ROUTINE", "Routine appointment"),
    ConsultationKind.repeat: ("FOLLOWUP", "A follow up visit from a previous appointment"),
}
# How an audit entry's object names a FHIR resource; object types not listed are named by identifier only.
AUDIT_OBJECT_TYPES: Mapping[str, str] = {"patient": "Patient", "physician": "Practitioner",
                                         "consultation": "Appointment", "consent": "Consent"}
_READ_ACTIONS = frozenset({"read", "listed", "exported", "downloaded", "verified", "signature_downloaded", "search",
                           "everything"})
_CREATE_ACTIONS = frozenset({"booked", "created", "signed", "prepared", "added", "create"})


@dataclass(frozen=True)
class Clinic:
    """Whose FHIR server this is: identifier systems and full URLs hang off the clinic's public URL."""

    base_url: str
    name: str

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url.rstrip('/')}/fhir/R4"

    def system(self, name: str) -> str:
        """An identifier system of ours (`.../fhir/sid/patient`), stable as long as the public URL is."""
        return f"{self.base_url.rstrip('/')}/fhir/sid/{name}"

    def code_system(self, name: str) -> str:
        return f"{self.base_url.rstrip('/')}/fhir/CodeSystem/{name}"


@dataclass(frozen=True)
class Context:
    """What a loader needs besides the database: the clinic, and the language for displayed names."""

    clinic: Clinic
    locale: str = "en"
    role: str | None = None  # the caller's, where a resource shows less to some (a QA review's author)


def is_resource_type(name: str) -> bool:
    """A FHIR resource type's name (`Encounter`), not a data type's (`Coding`) nor one of ours."""
    try:
        model = get_fhir_model_class(name)
    except ValueError:
        return False
    return issubclass(model, Resource)


# --- The registry ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A resource located by a read: whose data it is (None: nobody's, like a practitioner) and how to map it.

    `build` runs only after the caller's access to `patient_id` is established, so a mapping that fails (a
    damaged document) never tells someone without access that the resource exists.
    """

    patient_id: uuid.UUID | None
    build: Callable[[], Resource]
    # Who may read it, when that is not the patient rule: (session, user id, role) -> allowed. A QA review is the
    # clinic's internal quality record, read by role and assignment, never by the patient (qa_audit/fhir.py).
    may_read: Callable[[AsyncSession, uuid.UUID, Role], Awaitable[bool]] | None = None


ReadFn = Callable[["AsyncSession", Context, str], Awaitable[Found | None]]
SearchFn = Callable[["AsyncSession", Context, uuid.UUID], Awaitable[Sequence[Resource]]]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # a FHIR search parameter type: reference, token
    documentation: str
    definition: str | None = None


PATIENT_PARAM = SearchParam("patient", "reference", "The patient (`Patient/{id}` or `{id}`); required, one value")


@dataclass(frozen=True)
class ResourceType:
    """One FHIR resource type the API serves.

    `read(session, ctx, id)` returns a `Found` or None (not found); `search(session, ctx, patient_id)` returns
    the patient's resources of this type, already allowed (an `OperationOutcome` among them becomes a
    warning entry). Loaders never check access: the API does, by `Found.patient_id` and `roles`.
    """

    name: str
    read: ReadFn
    search: SearchFn
    roles: frozenset[Role] = frozenset({Role.patient, Role.physician, Role.admin})
    search_param: SearchParam = PATIENT_PARAM  # the one parameter naming the patient (Patient: `_id`)
    in_everything: bool = True  # part of Patient/$everything
    operations: tuple[tuple[str, str], ...] = ()  # (name, OperationDefinition canonical) for the capability statement


@dataclass
class Registry:
    """The resource types served, in the order the capability statement and $everything list them."""

    types: dict[str, ResourceType] = field(default_factory=dict)

    def add(self, resource_type: ResourceType) -> ResourceType:
        """Serve one more type: its routes, its capability entry and its part of $everything follow from this."""
        if not is_resource_type(resource_type.name):
            raise ValueError(f"{resource_type.name!r} is not a FHIR R4 resource type")
        if resource_type.name in self.types:
            raise ValueError(f"{resource_type.name} is already registered")
        self.types[resource_type.name] = resource_type
        return resource_type

    def get(self, name: str) -> ResourceType | None:
        return self.types.get(name)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self.types.values()))

    def __len__(self) -> int:
        return len(self.types)


# --- Small shapes ----------------------------------------------------------------------------------------------------


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()  # aware (UTCDateTime); a naive one fails the instant's validation, as it should


def _ref(resource_type: str, resource_id: uuid.UUID | str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{resource_id}"}


def _identifier(clinic: Clinic, name: str, value: uuid.UUID | str) -> dict[str, str]:
    return {"use": "official", "system": clinic.system(name), "value": str(value)}


def condition_concept(condition: ConditionVersion, *, clinic: Clinic, locale: str) -> dict[str, Any]:
    """The reason for the visit: the catalogue entry the patient chose, with its ICD-10 code where it has one."""
    name = condition.name(locale)
    coding = [{"system": clinic.code_system("condition"), "version": str(condition.version),
               "code": condition.code, "display": name}]
    if condition.icd10:
        coding.append({"system": ICD10, "code": condition.icd10})
    return {"coding": coding, "text": name}


# --- People ----------------------------------------------------------------------------------------------------------


def patient(row: Patient, user: User, *, clinic: Clinic) -> FhirPatient:
    """The patient as the clinic knows them: name, birth date, contacts and language (no СНИЛС: not needed)."""
    return FhirPatient.model_validate({
        "resourceType": "Patient",
        "id": str(row.id),
        "identifier": [_identifier(clinic, "patient", row.id)],
        "active": user.is_active,
        "name": [{"use": "official", "text": user.full_name}],
        "telecom": [{"system": "phone", "value": row.phone, "use": "mobile"},
                    {"system": "email", "value": user.email}],
        "birthDate": row.birth_date,
        "communication": [{"language": {"coding": [{"system": BCP47, "code": user.locale}]}, "preferred": True}],
        "managingOrganization": {"display": clinic.name},
    })


def practitioner(row: Physician, user: User, *, clinic: Clinic) -> Practitioner:
    """A physician: name, specialty and licence (the staff e-mail is an account detail, not part of this)."""
    licence = {"system": clinic.system("licence"), "value": row.licence_number}
    return Practitioner.model_validate({
        "resourceType": "Practitioner",
        "id": str(row.id),
        "identifier": [_identifier(clinic, "practitioner", row.id), licence],
        "active": user.is_active,
        "name": [{"use": "official", "text": user.full_name}],
        "qualification": [{"identifier": [licence], "code": {"text": row.specialty}}],
    })


# --- The consultation: booking, visit, screening ---------------------------------------------------------------------


def appointment(row: Consultation, condition: ConditionVersion, *, clinic: Clinic, locale: str) -> Appointment:
    """The booking: when, with whom, why, and where it stands."""
    kind_code, kind_display = APPOINTMENT_KIND[row.kind]
    data: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": str(row.id),
        "identifier": [_identifier(clinic, "consultation", row.id)],
        "status": APPOINTMENT_STATUS[row.status],
        "appointmentType": {"coding": [{"system": APPOINTMENT_TYPE, "code": kind_code, "display": kind_display}]},
        "reasonCode": [condition_concept(condition, clinic=clinic, locale=locale)],
        "start": _iso(row.starts_at),
        "end": _iso(row.ends_at),
        "minutesDuration": max(1, round((row.ends_at - row.starts_at).total_seconds() / 60)),
        "created": _iso(row.created_at),
        "participant": [
            {"actor": _ref("Patient", row.patient_id), "required": "required", "status": "accepted"},
            {"actor": _ref("Practitioner", row.physician_id), "required": "required", "status": "accepted"},
        ],
    }
    if row.complaint:
        data["comment"] = row.complaint  # the patient's own words when booking: part of their record
    return Appointment.model_validate(data)


def encounter(row: Consultation, condition: ConditionVersion, *, clinic: Clinic, locale: str) -> Encounter:
    """The video visit itself (class VR, "virtual"), timed by the call: from admission to its end."""
    data: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": str(row.id),
        "identifier": [_identifier(clinic, "consultation", row.id)],
        "status": ENCOUNTER_STATUS[row.status],
        "class": {"system": ACT_CODE, "code": "VR", "display": "virtual"},
        "subject": _ref("Patient", row.patient_id),
        "participant": [{
            "type": [{"coding": [{"system": PARTICIPATION_TYPE, "code": "PPRF", "display": "primary performer"}]}],
            "individual": _ref("Practitioner", row.physician_id),
        }],
        "appointment": [_ref("Appointment", row.id)],
        "reasonCode": [condition_concept(condition, clinic=clinic, locale=locale)],
        "serviceProvider": {"display": clinic.name},
    }
    if row.admitted_at is not None:
        period = {"start": _iso(row.admitted_at)}
        if row.ended_at is not None:
            period["end"] = _iso(row.ended_at)
        data["period"] = period
    return Encounter.model_validate(data)


SCREENING_STAGES = ("booking", "checkin")


def questionnaire_response_id(consultation_id: uuid.UUID, stage: str) -> str:
    """One consultation has up to two screenings (at booking, at check-in): the stage tells them apart."""
    return f"{consultation_id}-{stage}"


def parse_questionnaire_response_id(value: str) -> tuple[uuid.UUID, str] | None:
    head, _, stage = value.rpartition("-")
    if stage not in SCREENING_STAGES:
        return None
    try:
        return uuid.UUID(head), stage
    except ValueError:
        return None


def _answer(question: Question | None, value: Any, locale: str) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int | float):
        if question is not None and question.unit:
            return {"valueQuantity": {"value": value, "unit": question.unit}}
        return {"valueInteger": value} if isinstance(value, int) else {"valueDecimal": value}
    if question is not None:
        for choice in question.choices:
            if choice.id == value:
                return {"valueCoding": {"code": choice.id, "display": choice.text.get(locale)}}
    return {"valueString": str(value)}


def questionnaire_response(row: Consultation, *, stage: str, questionnaire: Questionnaire, answers: Mapping[str, Any],
                           authored: dt.datetime, clinic: Clinic, locale: str) -> QuestionnaireResponse:
    """The screening answers as the patient gave them, with the questions' wording of the version they saw."""
    try:
        definition: QuestionnaireDefinition | None = QuestionnaireDefinition.model_validate(questionnaire.definition)
    except ValidationError:  # published versions were validated; an export still never fails on one
        definition = None
    questions = {q.id: q for q in definition.questions} if definition else {}
    order = [q.id for q in definition.questions] if definition else []
    items = []
    for link_id in [*[q for q in order if q in answers], *sorted(set(answers) - set(order))]:
        value = answers[link_id]
        if value is None:
            continue
        question = questions.get(link_id)
        item: dict[str, Any] = {"linkId": link_id, "answer": [_answer(question, value, locale)]}
        if question is not None:
            item["text"] = question.text.get(locale)
        items.append(item)
    data: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": questionnaire_response_id(row.id, stage),
        "identifier": _identifier(clinic, "questionnaire-response", questionnaire_response_id(row.id, stage)),
        "questionnaire": f"{clinic.base_url.rstrip('/')}/fhir/Questionnaire/{questionnaire.code}"
                         f"|{questionnaire.version}",
        "status": "completed",
        "subject": _ref("Patient", row.patient_id),
        "encounter": _ref("Encounter", row.id),
        "authored": _iso(authored),
        "source": _ref("Patient", row.patient_id),
    }
    if items:
        data["item"] = items
    return QuestionnaireResponse.model_validate(data)


# --- Consent (the consent domain's own mapping) -----------------------------------------------------------------------


def consent(row: Consent, *, pdf: bytes, clinic: Clinic) -> FhirConsent:
    """The signed consent through `consent.fhir`, with the signed PDF attached.

    Raises ValueError when the stored PDF no longer matches the hash the patient signed.
    """
    data = consent_fhir.consent_resource(consent_fhir.ConsentFhirInput(
        consent_id=row.id, patient_id=row.patient_id, purpose=row.purpose.value,
        status="inactive" if row.withdrawn_at else "active", signed_at=row.signed_at, withdrawn_at=row.withdrawn_at,
        language=row.language, template_version=row.template_version, template_sha256=row.template_sha256,
        document_sha256=row.document_sha256, pdf=pdf, signature_level=row.level.value, clinic_name=clinic.name,
        base_url=clinic.base_url))
    return FhirConsent.model_validate(data)


# --- Audit -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditActor:
    """The acting user as FHIR can name them: their Patient or Practitioner, else their account id."""

    user_id: uuid.UUID | None
    role: str | None
    patient_id: uuid.UUID | None = None
    physician_id: uuid.UUID | None = None


def audit_action(action: str) -> str:
    """FHIR's coarse action code (C, R, U, D, E) from ours (`consent.read`, `consultation.booked`, ...)."""
    verb = action.rsplit(".", 1)[-1]
    words = {verb, verb.rsplit("_", 1)[-1]}  # `diagnosis_added` is an `added`
    if words & _READ_ACTIONS:
        return "R"
    if words & _CREATE_ACTIONS:
        return "C"
    if words & {"deleted", "removed"}:
        return "D"
    return "U" if verb.endswith("ed") else "E"


def _agent(actor: AuditActor, clinic: Clinic) -> dict[str, Any]:
    agent: dict[str, Any] = {"requestor": actor.user_id is not None}
    if actor.role:
        agent["role"] = [{"coding": [{"system": clinic.code_system("role"), "code": actor.role}]}]
    if actor.patient_id is not None:
        agent["who"] = _ref("Patient", actor.patient_id)
    elif actor.physician_id is not None:
        agent["who"] = _ref("Practitioner", actor.physician_id)
    elif actor.user_id is not None:
        agent["who"] = {"identifier": {"system": clinic.system("user"), "value": str(actor.user_id)}}
    else:
        agent["who"] = {"display": clinic.name}  # the service itself (a scheduled job)
    if actor.user_id is not None:
        agent["type"] = {"coding": [{"system": SECURITY_ROLE_TYPE, "code": "humanuser", "display": "human user"}]}
    return agent


def _entity_what(object_type: str, object_id: str, clinic: Clinic) -> dict[str, Any]:
    fhir_type = AUDIT_OBJECT_TYPES.get(object_type, object_type)
    if not is_resource_type(fhir_type):
        return {"identifier": {"system": clinic.system(object_type), "value": object_id}}
    return _ref(fhir_type, object_id)


def audit_event(entry: AuditEntry, *, actor: AuditActor, clinic: Clinic) -> AuditEvent:
    """One entry of a patient's access log: who did what to which of their data, when, and whether it worked.

    Only codes and references leave: the entry's `detail`, request id and address hash stay in the log.
    """
    if entry.subject_patient_id is None:
        raise ValueError("only entries about a patient's data are exported")
    entities: list[dict[str, Any]] = [{
        "what": _ref("Patient", entry.subject_patient_id),
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }]
    if entry.object_id is not None and not (entry.object_type in ("patient", "Patient")
                                            and entry.object_id == str(entry.subject_patient_id)):
        entities.append({"what": _entity_what(entry.object_type, entry.object_id, clinic),
                         "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}})
    return AuditEvent.model_validate({
        "resourceType": "AuditEvent",
        "id": str(entry.seq),
        "type": {"system": DICOM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": clinic.code_system("audit-action"), "code": entry.action}],
        "action": audit_action(entry.action),
        "recorded": _iso(entry.at),
        "outcome": "0" if entry.outcome == "success" else "4",
        "agent": [_agent(actor, clinic)],
        "source": {"site": clinic.base_url, "observer": {"display": clinic.name},
                   "type": [{"system": SECURITY_SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
        "entity": entities,
    })


# --- Bundles, outcomes, capabilities ---------------------------------------------------------------------------------


def searchset(resources: Iterable[Resource], *, clinic: Clinic, self_url: str, now: dt.datetime) -> Bundle:
    """A search's answer; an OperationOutcome among the resources is a warning entry, not a match."""
    entries, total = [], 0
    for resource in resources:
        if isinstance(resource, OperationOutcome):
            entries.append({"resource": resource, "search": {"mode": "outcome"}})
            continue
        total += 1
        entries.append({"fullUrl": f"{clinic.fhir_base}/{resource.get_resource_type()}/{resource.id}",
                        "resource": resource, "search": {"mode": "match"}})
    data: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "timestamp": _iso(now), "total": total,
                            "link": [{"relation": "self", "url": self_url}]}
    if entries:
        data["entry"] = entries
    return Bundle.model_validate(data)


# Problem statuses as FHIR issue types (http://hl7.org/fhir/issue-type).
ISSUE_TYPES: Mapping[int, str] = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
                                  405: "not-supported", 409: "conflict", 422: "invalid", 429: "throttled",
                                  500: "exception", 503: "transient"}


def operation_outcome(*, status: int, code: str, title: str, detail: str | None = None,
                      severity: str = "error") -> OperationOutcome:
    """An error (or a search's warning) in FHIR's shape, carrying the same `code` a problem document would."""
    issue: dict[str, Any] = {"severity": severity, "code": ISSUE_TYPES.get(status, "processing"),
                             "details": {"coding": [{"system": PROBLEM_SYSTEM, "code": code}], "text": title}}
    if detail:
        issue["diagnostics"] = detail
    return OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": [issue]})


def capability_statement(registry: Registry, *, clinic: Clinic, software_version: str,
                         now: dt.datetime) -> CapabilityStatement:
    """What this server does, generated from the registry, so it lists exactly the types that are served."""
    resources = []
    for resource_type in registry:
        param = resource_type.search_param
        search_param: dict[str, Any] = {"name": param.name, "type": param.type, "documentation": param.documentation}
        if param.definition:
            search_param["definition"] = param.definition
        entry: dict[str, Any] = {
            "type": resource_type.name,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": False,
            "searchParam": [search_param],
            "documentation": "Roles: " + ", ".join(sorted(role.value for role in resource_type.roles)),
        }
        if resource_type.operations:
            entry["operation"] = [{"name": name, "definition": definition}
                                  for name, definition in resource_type.operations]
        resources.append(entry)
    return CapabilityStatement.model_validate({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _iso(now),
        "publisher": clinic.name,
        "kind": "instance",
        "software": {"name": "telemed", "version": software_version},
        "implementation": {"description": f"{clinic.name}: read-only FHIR R4 API", "url": clinic.fhir_base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only. Searches need the patient and answer only what the caller may see.",
            "security": {"description": "Authorization: Bearer <access token from /api/v1/auth/login>, or the "
                                        "browser session cookie. Another person's resource answers 404."},
            "resource": resources,
        }],
    })
