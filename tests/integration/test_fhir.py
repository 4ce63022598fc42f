"""The read-only FHIR R4 API on a real clinic: two patients of one physician, one of them seen and checked in.

Every answer is parsed back with fhir.resources, so what we serve is what a FHIR client accepts.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from openapi_spec_validator import validate
from sqlalchemy import select, update

from consent.models import Consent, ConsentDocument
from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.db.engine import transaction
from server.records.fhir_api import REGISTRY
from tests.consent_helpers import sign_consents
from tests.factories import Account, admin, create_staff, register_patient
from tests.scheduling_helpers import benign_answers, booked_clinic, booking, free_slot

FHIR_JSON = "application/fhir+json"
TYPES = ("Patient", "Practitioner", "Appointment", "Encounter", "QuestionnaireResponse", "Consent", "AuditEvent")
SERVED = (*TYPES, "DocumentReference")  # the record's documents: tests/integration/test_fhir_documents.py


async def fhir_get(client: TestClient, path: str, account: Account | None = None, status: int = 200) -> dict[str, Any]:
    """GET a FHIR path, check status and content type, and parse the body with fhir.resources (which validates)."""
    response = await client.get(path, headers=account.auth if account else {})
    assert response.status == status, await response.text()
    assert response.content_type == FHIR_JSON
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = json.loads(await response.text())
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    return body


def entries(bundle: dict[str, Any], resource_type: str | None = None) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])
            if resource_type is None or e["resource"]["resourceType"] == resource_type]


def issue_code(outcome: dict[str, Any]) -> tuple[str, str]:
    OperationOutcome.model_validate(outcome)
    issue = outcome["issue"][0]
    return issue["code"], issue["details"]["coding"][0]["code"]


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """Anna was seen (booked, checked in, admitted, finished); Boris is booked with the same physician."""
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, patient_name="Анна Первая")
    client, doctor, anna = clinic["client"], clinic["doctor"], clinic["patient"]
    consultation = clinic["consultation"]
    checked = await client.post(f"/api/v1/consultations/{consultation}/check-in", headers=anna.auth,
                                json={"answers": benign_answers(clinic["catalogue"]["checkin"]),
                                      "device_check": {"camera": True, "microphone": True, "speaker": True}})
    assert checked.status == 200, await checked.text()
    for step in ("admit", "finish"):
        done = await client.post(f"/api/v1/consultations/{consultation}/{step}", headers=doctor.auth)
        assert done.status == 200, await done.text()
    boris = await register_patient(client, full_name="Борис Второй")
    await sign_consents(client, boris)
    starts_at = await free_slot(client, boris, clinic["physician_id"], index=1)
    made = await client.post("/api/v1/consultations", headers=boris.auth, json=booking(
        clinic["physician_id"], starts_at, benign_answers(clinic["catalogue"]["respiratory"])))
    assert made.status == 201, await made.text()
    return {**clinic, "anna": anna, "boris": boris, "boris_consultation": (await made.json())["id"]}


async def test_fhir_every_read_validates_and_maps_the_consultation(clinic: dict[str, Any]) -> None:
    client, anna, consultation = clinic["client"], clinic["anna"], clinic["consultation"]
    patient = await fhir_get(client, f"/fhir/R4/Patient/{anna.patient_id}", anna)
    assert patient["name"][0]["text"] == "Анна Первая"
    assert patient["identifier"][0]["system"] == "http://127.0.0.1:8080/fhir/sid/patient"
    practitioner = await fhir_get(client, f"/fhir/R4/Practitioner/{clinic['physician_id']}", anna)
    assert practitioner["qualification"][0]["code"]["text"] == "cardiology"

    appointment = await fhir_get(client, f"/fhir/R4/Appointment/{consultation}", anna)
    assert appointment["status"] == "fulfilled"
    assert {p["actor"]["reference"] for p in appointment["participant"]} == {
        f"Patient/{anna.patient_id}", f"Practitioner/{clinic['physician_id']}"}

    encounter = await fhir_get(client, f"/fhir/R4/Encounter/{consultation}", anna)
    assert encounter["status"] == "finished"
    assert encounter["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR",
                                  "display": "virtual"}
    assert encounter["period"]["start"] < encounter["period"]["end"]
    assert encounter["subject"]["reference"] == f"Patient/{anna.patient_id}"
    assert encounter["participant"][0]["individual"]["reference"] == f"Practitioner/{clinic['physician_id']}"
    assert encounter["appointment"][0]["reference"] == f"Appointment/{consultation}"
    assert encounter["reasonCode"][0]["coding"][0]["code"] == "arvi"

    booking_qr = await fhir_get(client, f"/fhir/R4/QuestionnaireResponse/{consultation}-booking", anna)
    assert booking_qr["encounter"]["reference"] == f"Encounter/{consultation}"
    assert booking_qr["item"]
    checkin_qr = await fhir_get(client, f"/fhir/R4/QuestionnaireResponse/{consultation}-checkin", anna)
    temperature = next(i for i in checkin_qr["item"] if i["linkId"] == "temperature")
    assert temperature["answer"][0]["valueQuantity"]["unit"] == "°C"

    consents = await fhir_get(client, f"/fhir/R4/Consent?patient={anna.patient_id}", anna)
    consent = entries(consents)[0]
    assert await fhir_get(client, f"/fhir/R4/Consent/{consent['id']}", anna) == consent
    events = await fhir_get(client, f"/fhir/R4/AuditEvent?patient=Patient/{anna.patient_id}", anna)
    event = entries(events)[-1]
    assert await fhir_get(client, f"/fhir/R4/AuditEvent/{event['id']}", anna) == event


async def test_fhir_search_by_patient_never_crosses_over(clinic: dict[str, Any]) -> None:
    """The physician sees both patients; each search answers one patient's resources and nothing of the other."""
    client, doctor, anna, boris = clinic["client"], clinic["doctor"], clinic["anna"], clinic["boris"]
    for resource_type in TYPES:
        if resource_type == "AuditEvent":
            continue  # not the treating physician's (see the access test)
        param = "_id" if resource_type == "Patient" else "patient"
        for mine, other, consultation in ((anna, boris, clinic["boris_consultation"]),
                                          (boris, anna, clinic["consultation"])):
            bundle = await fhir_get(client, f"/fhir/R4/{resource_type}?{param}={mine.patient_id}", doctor)
            assert bundle["type"] == "searchset"
            found = entries(bundle)
            assert found, resource_type
            assert bundle["total"] == len(found)
            text = json.dumps(found)
            assert str(other.patient_id) not in text, resource_type
            assert consultation not in text, resource_type
            assert {r["resourceType"] for r in found} == {resource_type}
    # Admins see the access log too, and it holds only that patient's entries.
    boss = await admin(client)
    events = await fhir_get(client, f"/fhir/R4/AuditEvent?patient={boris.patient_id}", boss)
    assert entries(events)
    assert all(e["entity"][0]["what"]["reference"] == f"Patient/{boris.patient_id}" for e in entries(events))


async def test_fhir_everything_holds_the_patients_record_and_nothing_else(clinic: dict[str, Any]) -> None:
    client, anna, boris, consultation = clinic["client"], clinic["anna"], clinic["boris"], clinic["consultation"]
    bundle = await fhir_get(client, f"/fhir/R4/Patient/{anna.patient_id}/$everything", anna)
    Bundle.model_validate(bundle)
    ids = {(r["resourceType"], r["id"]) for r in entries(bundle)}
    assert {("Patient", anna.patient_id), ("Encounter", consultation), ("Appointment", consultation),
            ("QuestionnaireResponse", f"{consultation}-booking"),
            ("QuestionnaireResponse", f"{consultation}-checkin"),
            ("Practitioner", clinic["physician_id"])} <= ids
    assert len(entries(bundle, "Consent")) == 3
    assert entries(bundle, "AuditEvent")
    text = json.dumps(bundle)
    assert str(boris.patient_id) not in text
    assert clinic["boris_consultation"] not in text
    # The physician's view leaves out the access log; _type narrows it.
    mine = await fhir_get(client, f"/fhir/R4/Patient/{anna.patient_id}/$everything", clinic["doctor"])
    assert not entries(mine, "AuditEvent")
    assert entries(mine, "Encounter")
    narrowed = await fhir_get(client, f"/fhir/R4/Patient/{anna.patient_id}/$everything?_type=Encounter,Consent", anna)
    assert {r["resourceType"] for r in entries(narrowed)} == {"Encounter", "Consent"}


async def test_fhir_another_persons_resources_are_404_operation_outcomes(clinic: dict[str, Any]) -> None:
    client, anna, boris, consultation = clinic["client"], clinic["anna"], clinic["boris"], clinic["consultation"]
    stranger_doctor = await create_staff(client, Role.physician)
    for account in (boris, stranger_doctor):
        for path in (f"/fhir/R4/Patient/{anna.patient_id}", f"/fhir/R4/Encounter/{consultation}",
                     f"/fhir/R4/Appointment/{consultation}", f"/fhir/R4/QuestionnaireResponse/{consultation}-booking",
                     f"/fhir/R4/Patient/{anna.patient_id}/$everything"):
            refused = await fhir_get(client, path, account, status=404)
            assert issue_code(refused) == ("not-found", "not_found")
            # Exactly what an id that never existed answers.
            unknown = path.replace(consultation, str(uuid.uuid4())).replace(str(anna.patient_id), str(uuid.uuid4()))
            assert await fhir_get(client, unknown, account, status=404) == refused
    consents = entries(await fhir_get(client, f"/fhir/R4/Consent?patient={anna.patient_id}", anna))
    await fhir_get(client, f"/fhir/R4/Consent/{consents[0]['id']}", boris, status=404)
    # A search for someone one may not see is an empty searchset, as for a patient who does not exist.
    empty = await fhir_get(client, f"/fhir/R4/Encounter?patient={anna.patient_id}", stranger_doctor)
    assert empty["total"] == 0
    assert "entry" not in empty
    # The access log is not the physician's: their role may not read it (403, as the API's roles do).
    events = entries(await fhir_get(client, f"/fhir/R4/AuditEvent?patient={anna.patient_id}", anna))
    forbidden = await fhir_get(client, f"/fhir/R4/AuditEvent/{events[0]['id']}", clinic["doctor"], status=403)
    assert issue_code(forbidden) == ("forbidden", "role_forbidden")
    await fhir_get(client, f"/fhir/R4/AuditEvent/{events[0]['id']}", boris, status=404)
    # No credentials: 401 with the challenge; QA experts have no FHIR access.
    response = await client.get(f"/fhir/R4/Encounter/{consultation}")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert issue_code(json.loads(await response.text()))[0] == "login"
    expert = await create_staff(client, Role.qa_expert)
    await fhir_get(client, f"/fhir/R4/Encounter/{consultation}", expert, status=403)


async def test_fhir_reads_are_audited(clinic: dict[str, Any]) -> None:
    client, doctor, anna, consultation = clinic["client"], clinic["doctor"], clinic["anna"], clinic["consultation"]
    await fhir_get(client, f"/fhir/R4/Encounter/{consultation}", doctor)
    await fhir_get(client, f"/fhir/R4/Consent?patient={anna.patient_id}", doctor)
    await fhir_get(client, f"/fhir/R4/Patient/{anna.patient_id}/$everything", anna)
    await fhir_get(client, f"/fhir/R4/Practitioner/{clinic['physician_id']}", anna)  # nobody's record: no entry
    async with client.app[keys.read_sessions]() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.action.like("fhir.%"))
                                      .order_by(AuditEntry.seq))).all()
    assert [(r.action, r.object_type, r.object_id, r.actor_role) for r in rows] == [
        ("fhir.read", "Encounter", consultation, "physician"),
        ("fhir.search", "patient", anna.patient_id, "physician"),
        ("fhir.everything", "patient", anna.patient_id, "patient"),
    ]
    assert all(r.subject_patient_id == uuid.UUID(anna.patient_id) for r in rows)
    assert rows[1].detail == {"resource_type": "Consent", "count": 3}
    # The patient sees it in their access log, and the log's own export names the physician's read.
    log = await (await client.get("/api/v1/me/access-log", headers=anna.auth)).json()
    assert {"fhir.read", "fhir.search", "fhir.everything"} <= {item["action"] for item in log["items"]}
    events = entries(await fhir_get(client, f"/fhir/R4/AuditEvent?patient={anna.patient_id}", anna))
    read = next(e for e in events if e["subtype"][0]["code"] == "fhir.read")
    assert read["action"] == "R"
    assert read["agent"][0]["who"]["reference"] == f"Practitioner/{clinic['physician_id']}"
    assert read["entity"][1]["what"]["reference"] == f"Encounter/{consultation}"


async def test_fhir_bad_search_parameters_are_400(clinic: dict[str, Any]) -> None:
    client, anna = clinic["client"], clinic["anna"]
    mine = anna.patient_id
    for query in ("/fhir/R4/Encounter", f"/fhir/R4/Encounter?patient={mine}&status=finished",
                  "/fhir/R4/Encounter?patient=not-an-id", f"/fhir/R4/Encounter?patient={mine},{uuid.uuid4()}",
                  f"/fhir/R4/Encounter?patient={mine}&patient={mine}",
                  f"/fhir/R4/Encounter?patient={mine}&_format=xml", "/fhir/R4/Encounter?patient=",
                  f"/fhir/R4/Patient?patient={mine}", "/fhir/R4/Encounter?patient:missing=true",
                  f"/fhir/R4/Patient/{anna.patient_id}/$everything?_type=Observation",
                  f"/fhir/R4/Patient/{anna.patient_id}/$everything?_since=2020-01-01"):
        outcome = await fhir_get(client, query, anna, status=400)
        assert issue_code(outcome) == ("invalid", "bad_search"), query
    assert (await fhir_get(client, f"/fhir/R4/Patient?_id={anna.patient_id}&_format=json", anna))["total"] == 1


async def test_fhir_unknown_types_and_writes_are_operation_outcomes(clinic: dict[str, Any]) -> None:
    client, anna = clinic["client"], clinic["anna"]
    missing = await fhir_get(client, "/fhir/R4/Observation/1", anna, status=404)
    assert issue_code(missing)[0] == "not-found"
    response = await client.post("/fhir/R4/Patient", headers=anna.auth, json={"resourceType": "Patient"})
    assert response.status == 405
    assert response.content_type == FHIR_JSON
    assert issue_code(json.loads(await response.text())) == ("not-supported", "method_not_allowed")


async def test_fhir_damaged_consent_is_409_and_a_warning_in_searches(clinic: dict[str, Any]) -> None:
    client, anna = clinic["client"], clinic["anna"]
    async with transaction(client.app[keys.sessions]) as session:
        consent = (await session.scalars(select(Consent).where(Consent.patient_id == uuid.UUID(anna.patient_id))
                                         .order_by(Consent.signed_at).limit(1))).one()
        await session.execute(update(ConsentDocument).where(ConsentDocument.id == consent.document_id)
                              .values(pdf=b"%PDF-1.7 not what was signed"))
    damaged = await fhir_get(client, f"/fhir/R4/Consent/{consent.id}", anna, status=409)
    assert issue_code(damaged) == ("conflict", "consent_damaged")
    bundle = await fhir_get(client, f"/fhir/R4/Consent?patient={anna.patient_id}", anna)
    assert bundle["total"] == 2
    warnings = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert [w["resource"]["issue"][0]["severity"] for w in warnings] == ["warning"]


async def test_fhir_admin_reads_any_patient_and_an_unknown_one_is_empty(clinic: dict[str, Any]) -> None:
    client, anna = clinic["client"], clinic["anna"]
    boss = await admin(client)
    await fhir_get(client, f"/fhir/R4/Encounter/{clinic['consultation']}", boss)
    await fhir_get(client, f"/fhir/R4/Patient/{anna.patient_id}/$everything", boss)
    nobody = await fhir_get(client, f"/fhir/R4/Patient?_id={uuid.uuid4()}", boss)
    assert nobody["total"] == 0


async def test_fhir_capability_statement_is_the_registry(client: TestClient) -> None:
    statement = await fhir_get(client, "/fhir/R4/metadata")  # public: clients read it before signing in
    CapabilityStatement.model_validate(statement)
    resources = statement["rest"][0]["resource"]
    assert [r["type"] for r in resources] == [t.name for t in REGISTRY] == list(SERVED)
    patient = resources[0]
    assert patient["operation"][0]["name"] == "everything"
    assert patient["searchParam"][0]["name"] == "_id"
    assert {r["searchParam"][0]["name"] for r in resources[1:]} == {"patient"}


async def test_fhir_routes_are_in_the_openapi_document(client: TestClient) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    validate(spec)
    for resource_type in SERVED:
        read = spec["paths"][f"/fhir/R4/{resource_type}/{{id}}"]["get"]
        assert FHIR_JSON in read["responses"]["404"]["content"]
        assert f"/fhir/R4/{resource_type}" in spec["paths"]
    assert spec["paths"]["/fhir/R4/AuditEvent/{id}"]["get"]["x-roles"] == ["admin", "patient"]
    assert spec["paths"]["/fhir/R4/metadata"]["get"]["security"] == []
    assert "/fhir/R4/Patient/{id}/$everything" in spec["paths"]
