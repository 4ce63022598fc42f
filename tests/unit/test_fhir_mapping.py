"""The pure FHIR mapping: every consultation state, the screening answers, audit entries and the registry.

Rows are built in memory (never saved); each resource is serialised and parsed back, as a client would.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from consent.models import Consent, ConsentPurpose, SignatureLevel
from server.audit.models import AuditEntry
from server.auth.models import Role, User
from server.people.models import Patient, Physician
from server.records import fhir
from server.scheduling.models import ConditionVersion, Consultation, ConsultationKind, ConsultationStatus, Questionnaire

CLINIC = fhir.Clinic("https://clinic.example/", "Клиника")
T0 = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
PATIENT_ID = uuid.UUID("9a1e7c3b-4f5d-4b6a-8c2d-1e0f9a8b7c6d")
PHYSICIAN_ID = uuid.UUID("0b6f3d1c-52a4-4d7e-8f0e-2c9d8a7b6e51")
QUESTIONNAIRE = {
    "code": "respiratory", "version": 2, "title": {"ru": "Дыхание", "en": "Breathing"},
    "questions": [
        {"id": "temperature", "type": "number", "text": {"ru": "Температура?", "en": "Temperature?"}, "unit": "°C",
         "min": 34, "max": 43},
        {"id": "cough_days", "type": "number", "text": {"ru": "Сколько дней кашель?", "en": "Days of cough?"}},
        {"id": "chest_pain", "type": "yes_no", "text": {"ru": "Боль в груди?", "en": "Chest pain?"}},
        {"id": "sputum", "type": "choice", "text": {"ru": "Мокрота?", "en": "Sputum?"},
         "choices": [{"id": "none", "text": {"ru": "Нет", "en": "None"}},
                     {"id": "clear", "text": {"ru": "Светлая", "en": "Clear"}}]},
    ],
}


def roundtrip(resource: Resource) -> dict[str, Any]:
    """The JSON a client receives, parsed back by its own resource type's model."""
    data: dict[str, Any] = json.loads(resource.model_dump_json(exclude_none=True))
    get_fhir_model_class(data["resourceType"]).model_validate(data)
    return data


def condition(icd10: str | None = "J06.9") -> ConditionVersion:
    return ConditionVersion(id=uuid.uuid4(), code="arvi", version=3, icd10=icd10, name_ru="ОРВИ", name_en="Common cold",
                            allows_primary=True, allows_repeat=True, questionnaire_code="respiratory")


def consultation(status: ConsultationStatus = ConsultationStatus.scheduled, **changes: Any) -> Consultation:
    values: dict[str, Any] = {
        "id": uuid.uuid4(), "patient_id": PATIENT_ID, "physician_id": PHYSICIAN_ID, "condition_id": uuid.uuid4(),
        "kind": ConsultationKind.primary, "status": status, "starts_at": T0, "ends_at": T0 + dt.timedelta(minutes=20),
        "complaint": "", "questionnaire_id": uuid.uuid4(), "screening_answers": {}, "booked_by_user_id": uuid.uuid4(),
        "created_at": T0 - dt.timedelta(days=1), "admitted_at": None, "ended_at": None,
    }
    values.update(changes)
    return Consultation(**values)


@pytest.mark.parametrize("status", list(ConsultationStatus))
def test_every_consultation_status_maps_to_a_valid_appointment_and_encounter(status: ConsultationStatus) -> None:
    row = consultation(status)
    appointment = roundtrip(fhir.appointment(row, condition(), clinic=CLINIC, locale="en"))
    encounter = roundtrip(fhir.encounter(row, condition(), clinic=CLINIC, locale="en"))
    assert appointment["status"] == fhir.APPOINTMENT_STATUS[status]
    assert encounter["status"] == fhir.ENCOUNTER_STATUS[status]


def test_encounter_is_a_virtual_visit_timed_by_the_call() -> None:
    admitted, ended = T0 + dt.timedelta(minutes=2), T0 + dt.timedelta(minutes=17)
    row = consultation(ConsultationStatus.documented, admitted_at=admitted, ended_at=ended,
                       kind=ConsultationKind.repeat)
    encounter = roundtrip(fhir.encounter(row, condition(), clinic=CLINIC, locale="ru"))
    assert encounter["class"]["code"] == "VR"
    assert encounter["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert encounter["period"] == {"start": "2026-11-22T09:02:00Z", "end": "2026-11-22T09:17:00Z"}
    assert encounter["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert encounter["participant"][0]["individual"] == {"reference": f"Practitioner/{PHYSICIAN_ID}"}
    assert encounter["appointment"] == [{"reference": f"Appointment/{row.id}"}]
    reason = encounter["reasonCode"][0]
    assert reason["text"] == "ОРВИ"
    assert {(c["system"], c["code"]) for c in reason["coding"]} == {
        ("https://clinic.example/fhir/CodeSystem/condition", "arvi"), ("http://hl7.org/fhir/sid/icd-10", "J06.9")}
    appointment = roundtrip(fhir.appointment(row, condition(icd10=None), clinic=CLINIC, locale="en"))
    assert appointment["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"
    assert len(appointment["reasonCode"][0]["coding"]) == 1  # no ICD-10 code: only the catalogue's
    assert appointment["minutesDuration"] == 20
    assert "comment" not in appointment


def test_an_encounter_not_yet_admitted_has_no_period() -> None:
    encounter = roundtrip(fhir.encounter(consultation(ConsultationStatus.waiting), condition(), clinic=CLINIC,
                                         locale="en"))
    assert "period" not in encounter
    begun = roundtrip(fhir.encounter(consultation(ConsultationStatus.interrupted, admitted_at=T0), condition(),
                                     clinic=CLINIC, locale="en"))
    assert begun["period"] == {"start": "2026-11-22T09:00:00Z"}


def test_screening_answers_keep_their_types_and_the_questions_wording() -> None:
    row = consultation()
    questionnaire = Questionnaire(id=uuid.uuid4(), code="respiratory", version=2, definition=QUESTIONNAIRE,
                                  sha256="0" * 64)
    answers = {"sputum": "clear", "chest_pain": False, "temperature": 37.2, "cough_days": 3, "legacy": "x",
               "skipped": None}
    response = roundtrip(fhir.questionnaire_response(row, stage="checkin", questionnaire=questionnaire,
                                                     answers=answers, authored=T0, clinic=CLINIC, locale="ru"))
    assert response["id"] == f"{row.id}-checkin"
    assert response["questionnaire"] == "https://clinic.example/fhir/Questionnaire/respiratory|2"
    assert response["status"] == "completed"
    assert response["subject"] == response["source"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert response["encounter"] == {"reference": f"Encounter/{row.id}"}
    items = {item["linkId"]: item for item in response["item"]}
    assert list(items) == ["temperature", "cough_days", "chest_pain", "sputum", "legacy"]  # the questionnaire's order
    assert items["temperature"]["answer"] == [{"valueQuantity": {"value": 37.2, "unit": "°C"}}]
    assert items["temperature"]["text"] == "Температура?"
    assert items["cough_days"]["answer"] == [{"valueInteger": 3}]
    assert items["chest_pain"]["answer"] == [{"valueBoolean": False}]
    assert items["sputum"]["answer"] == [{"valueCoding": {"code": "clear", "display": "Светлая"}}]
    assert items["legacy"]["answer"] == [{"valueString": "x"}]


def test_questionnaire_response_ids_round_trip() -> None:
    consultation_id = uuid.uuid4()
    for stage in fhir.SCREENING_STAGES:
        assert fhir.parse_questionnaire_response_id(fhir.questionnaire_response_id(consultation_id, stage)) == (
            consultation_id, stage)
    for bad in ("", "booking", f"{consultation_id}-other", "not-a-uuid-booking", str(consultation_id)):
        assert fhir.parse_questionnaire_response_id(bad) is None


def test_patient_and_practitioner_carry_identifiers_under_the_public_url() -> None:
    user = User(id=uuid.uuid4(), email="anna@example.org", full_name="Анна Иванова", locale="ru", is_active=True,
                role=Role.patient, password_hash="x")
    row = Patient(id=PATIENT_ID, user_id=user.id, birth_date=dt.date(1950, 5, 1), phone="+79160001122",
                  snils="11223344595")
    patient = roundtrip(fhir.patient(row, user, clinic=CLINIC))
    assert patient["identifier"] == [{"use": "official", "system": "https://clinic.example/fhir/sid/patient",
                                      "value": str(PATIENT_ID)}]
    assert patient["birthDate"] == "1950-05-01"
    assert "11223344595" not in json.dumps(patient)  # СНИЛС stays home
    staff = User(id=uuid.uuid4(), email="doc@clinic.example", full_name="Врач", locale="ru", is_active=True,
                 role=Role.physician, password_hash="x")
    physician = Physician(id=PHYSICIAN_ID, user_id=staff.id, specialty="therapy", licence_number="77-01",
                          time_zone="Europe/Moscow")
    practitioner = roundtrip(fhir.practitioner(physician, staff, clinic=CLINIC))
    assert {i["system"] for i in practitioner["identifier"]} == {
        "https://clinic.example/fhir/sid/practitioner", "https://clinic.example/fhir/sid/licence"}
    assert "doc@clinic.example" not in json.dumps(practitioner)


def test_consent_goes_through_the_consent_domains_mapping() -> None:
    pdf = b"%PDF-1.4 signed"
    row = Consent(id=uuid.uuid4(), patient_id=PATIENT_ID, purpose=ConsentPurpose.recording, template_version=1,
                  template_sha256="a" * 64, document_sha256=hashlib.sha256(pdf).hexdigest(), language="ru",
                  level=SignatureLevel.simple, signed_at=T0, withdrawn_at=T0 + dt.timedelta(days=1))
    consent = roundtrip(fhir.consent(row, pdf=pdf, clinic=CLINIC))
    assert consent["status"] == "inactive"
    assert consent["patient"] == {"reference": f"Patient/{PATIENT_ID}"}
    with pytest.raises(ValueError, match="does not match"):
        fhir.consent(row, pdf=b"something else", clinic=CLINIC)


def entry(**changes: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "seq": 42, "at": T0, "actor_user_id": uuid.uuid4(), "actor_role": "physician", "action": "fhir.read",
        "object_type": "Encounter", "object_id": str(uuid.uuid4()), "subject_patient_id": PATIENT_ID,
        "outcome": "success", "request_id": "req-123456", "ip_hash": "f" * 32, "detail": {"secret": "Кашель"},
        "prev_hash": "0" * 64, "hash": "1" * 64,
    }
    values.update(changes)
    return AuditEntry(**values)


def test_audit_event_names_who_and_what_and_nothing_more() -> None:
    row = entry()
    actor = fhir.AuditActor(row.actor_user_id, "physician", physician_id=PHYSICIAN_ID)
    event = roundtrip(fhir.audit_event(row, actor=actor, clinic=CLINIC))
    assert event["id"] == "42"
    assert event["action"] == "R"
    assert event["outcome"] == "0"
    assert event["recorded"] == "2026-11-22T09:00:00Z"
    assert event["subtype"][0]["code"] == "fhir.read"
    assert event["agent"][0]["who"] == {"reference": f"Practitioner/{PHYSICIAN_ID}"}
    assert event["agent"][0]["requestor"] is True
    assert [e["what"] for e in event["entity"]] == [{"reference": f"Patient/{PATIENT_ID}"},
                                                   {"reference": f"Encounter/{row.object_id}"}]
    text = json.dumps(event, ensure_ascii=False)
    for private in ("Кашель", "req-123456", "f" * 32, "1" * 64):
        assert private not in text


def test_audit_event_agents_and_objects_of_every_kind() -> None:
    system = roundtrip(fhir.audit_event(entry(actor_user_id=None, actor_role="system", action="consultation.no_show",
                                              object_type="consultation", outcome="failure"),
                                        actor=fhir.AuditActor(None, "system"), clinic=CLINIC))
    assert system["agent"][0]["requestor"] is False
    assert system["agent"][0]["who"] == {"display": "Клиника"}
    assert system["entity"][1]["what"]["reference"].startswith("Appointment/")
    assert system["outcome"] == "4"
    admin_id = uuid.uuid4()
    by_admin = roundtrip(fhir.audit_event(entry(object_type="patient_diagnosis", action="record.diagnosis_added"),
                                          actor=fhir.AuditActor(admin_id, "admin"), clinic=CLINIC))
    assert by_admin["agent"][0]["who"] == {"identifier": {"system": "https://clinic.example/fhir/sid/user",
                                                          "value": str(admin_id)}}
    assert by_admin["entity"][1]["what"]["identifier"]["system"] == "https://clinic.example/fhir/sid/patient_diagnosis"
    assert by_admin["action"] == "C"
    own = roundtrip(fhir.audit_event(entry(object_type="patient", object_id=str(PATIENT_ID), action="fhir.everything"),
                                     actor=fhir.AuditActor(uuid.uuid4(), "patient", patient_id=PATIENT_ID),
                                     clinic=CLINIC))
    assert own["agent"][0]["who"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert len(own["entity"]) == 1  # the object is the patient themself
    with pytest.raises(ValueError, match="patient"):
        fhir.audit_event(entry(subject_patient_id=None), actor=fhir.AuditActor(None, "system"), clinic=CLINIC)


@pytest.mark.parametrize(("action", "code"), [
    ("consent.read", "R"), ("consultation.listed", "R"), ("consent.exported", "R"), ("consultation.booked", "C"),
    ("consent.signed", "C"), ("consultation.cancelled", "U"), ("schedule.exception_removed", "D"),
    ("consultation.call_resumed", "U"), ("call.join", "E"),
])
def test_audit_action_codes(action: str, code: str) -> None:
    assert fhir.audit_action(action) == code


async def _no_read(_session: Any, _ctx: fhir.Context, _id: str) -> fhir.Found | None:
    return None


async def _no_search(_session: Any, _ctx: fhir.Context, _patient: uuid.UUID) -> list[Resource]:
    return []


def test_registry_refuses_duplicates_and_non_fhir_types() -> None:
    registry = fhir.Registry()
    registry.add(fhir.ResourceType("Encounter", _no_read, _no_search))
    with pytest.raises(ValueError, match="already"):
        registry.add(fhir.ResourceType("Encounter", _no_read, _no_search))
    with pytest.raises(ValueError, match="not a FHIR"):
        registry.add(fhir.ResourceType("Protocol", _no_read, _no_search))
    assert [t.name for t in registry] == ["Encounter"]
    assert registry.get("Encounter") is not None
    assert registry.get("Patient") is None


def test_capability_statement_lists_exactly_the_registered_types() -> None:
    registry = fhir.Registry()
    registry.add(fhir.ResourceType("Patient", _no_read, _no_search, operations=(("everything", fhir.EVERYTHING),),
                                   search_param=fhir.SearchParam("_id", "token", "the id")))
    statement = roundtrip(fhir.capability_statement(registry, clinic=CLINIC, software_version="1.2", now=T0))
    assert [r["type"] for r in statement["rest"][0]["resource"]] == ["Patient"]
    # Another engineer's type appears the moment it is registered, with its roles and parameter.
    registry.add(fhir.ResourceType("DocumentReference", _no_read, _no_search,
                                   roles=frozenset({Role.patient, Role.admin})))
    statement = roundtrip(fhir.capability_statement(registry, clinic=CLINIC, software_version="1.2", now=T0))
    documents = statement["rest"][0]["resource"][1]
    assert documents["type"] == "DocumentReference"
    assert documents["searchParam"] == [{"name": "patient", "type": "reference",
                                         "documentation": fhir.PATIENT_PARAM.documentation}]
    assert documents["documentation"] == "Roles: admin, patient"
    assert statement["implementation"]["url"] == "https://clinic.example/fhir/R4"
    assert statement["fhirVersion"] == "4.0.1"


def test_searchset_counts_matches_not_warnings() -> None:
    row = consultation()
    warning = fhir.operation_outcome(status=409, code="consent_damaged", title="Damaged", severity="warning")
    bundle = roundtrip(fhir.searchset([fhir.encounter(row, condition(), clinic=CLINIC, locale="en"), warning],
                                      clinic=CLINIC, self_url="https://clinic.example/fhir/R4/Encounter?patient=x",
                                      now=T0))
    assert bundle["total"] == 1
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "outcome"]
    assert bundle["entry"][0]["fullUrl"] == f"https://clinic.example/fhir/R4/Encounter/{row.id}"
    assert "fullUrl" not in bundle["entry"][1]
    empty = roundtrip(fhir.searchset([], clinic=CLINIC, self_url="https://clinic.example/x", now=T0))
    assert empty["total"] == 0
    assert "entry" not in empty


@pytest.mark.parametrize(("status", "issue"), [(400, "invalid"), (401, "login"), (403, "forbidden"),
                                               (404, "not-found"), (409, "conflict"), (418, "processing")])
def test_operation_outcome_issue_types(status: int, issue: str) -> None:
    outcome = roundtrip(fhir.operation_outcome(status=status, code="some_code", title="Title", detail="Why"))
    assert outcome["issue"] == [{"severity": "error", "code": issue, "diagnostics": "Why", "details": {
        "coding": [{"system": fhir.PROBLEM_SYSTEM, "code": "some_code"}], "text": "Title"}}]
