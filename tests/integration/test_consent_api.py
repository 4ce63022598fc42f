"""Consent through the API: simple signatures with one-time codes, the gate before check-in, withdrawal,
the clinic's seal and verification, paper consents, templates and FHIR export."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from fhir.resources.R4B.consent import Consent as FhirConsent
from sqlalchemy import update

from consent import services
from consent.models import Consent, ConsentDocument, ConsentOtp, ConsentPurpose, ConsentTemplate, SignatureLevel
from server import keys
from server.app import create_app
from server.audit.services import AuditContext
from server.auth.models import Role
from server.db.engine import transaction
from tests.conftest import make_settings
from tests.consent_helpers import seed_templates, sign_consents
from tests.factories import Account, admin, create_staff, register_patient
from tests.scheduling_helpers import booked_clinic, seed_catalogue

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
DEVICE = {"camera": True, "microphone": True, "speaker": True}


def outbox_code(client: TestClient, channel: str = "email") -> str:
    """The code in the newest message of the development outbox, as the patient would read it."""
    folder = client.app[keys.settings].outbox_dir / channel
    newest = sorted(folder.iterdir())[-1]
    if channel == "sms":
        text = json.loads(newest.read_text())["text"]
    else:
        message = email.message_from_bytes(newest.read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        text = body.get_content()
    found = re.search(r"\b(\d{6})\b", text)
    assert found, text
    return found.group(1)


async def prepare(client: TestClient, patient: Account, purpose: str = "telemedicine_care",
                  language: str = "ru") -> dict[str, Any]:
    response = await client.post("/api/v1/consent-documents", headers=patient.auth,
                                 json={"purpose": purpose, "language": language})
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def send_code(client: TestClient, patient: Account, document_id: str, channel: str = "email") -> Any:
    return await client.post(f"/api/v1/consent-documents/{document_id}/code", headers=patient.auth,
                             json={"channel": channel})


async def sign(client: TestClient, patient: Account, document_id: str, code: str) -> Any:
    return await client.post(f"/api/v1/consent-documents/{document_id}/sign", headers=patient.auth,
                             json={"code": code})


async def signed_consent(client: TestClient, patient: Account, purpose: str = "telemedicine_care") -> dict[str, Any]:
    document = await prepare(client, patient, purpose)
    assert (await send_code(client, patient, document["id"])).status == 202
    response = await sign(client, patient, document["id"], outbox_code(client))
    assert response.status == 201, await response.text()
    return dict(await response.json())


@pytest.fixture
async def clinic(client: TestClient) -> TestClient:
    await seed_catalogue(client)
    return client


# --- Simple e-signature -------------------------------------------------------------------------------------------


async def test_the_document_is_a_pdf_of_the_current_version_with_its_hash(clinic: TestClient) -> None:
    patient = await register_patient(clinic, full_name="Мария Петровна Иванова")
    document = await prepare(clinic, patient)
    assert document["template_version"] == 1
    assert len(document["sha256"]) == 64
    pdf = await clinic.get(document["pdf_url"], headers=patient.auth)
    assert pdf.status == 200
    assert pdf.content_type == "application/pdf"
    import hashlib

    assert hashlib.sha256(await pdf.read()).hexdigest() == document["sha256"]
    again = await prepare(clinic, patient)
    assert again["id"] == document["id"]  # reloading reuses today's unsigned document


async def test_the_right_code_signs_with_evidence_and_the_seal(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    document = await prepare(clinic, patient)
    sent = await send_code(clinic, patient, document["id"])
    assert sent.status == 202
    body = await sent.json()
    assert body["destination"].startswith(patient.email[0])
    assert "***@" in body["destination"]
    response = await sign(clinic, patient, document["id"], outbox_code(clinic))
    assert response.status == 201, await response.text()
    consent = await response.json()
    assert consent["level"] == "simple"
    assert consent["status"] == "active"
    assert consent["current"]
    evidence = consent["evidence"]
    assert evidence["document_sha256"] == document["sha256"] == consent["document_sha256"]
    assert evidence["channel"] == "email"
    assert evidence["destination"] == body["destination"]
    assert evidence["ip_hash"]
    assert evidence["user_agent"]
    assert patient.email not in json.dumps(consent)  # only the masked address is kept
    verification = await (await clinic.get(f"/api/v1/consents/{consent['id']}/verification",
                                           headers=patient.auth)).json()
    assert verification["ok"], verification
    assert {c["name"] for c in verification["checks"]} == {"seal", "fields", "document", "template", "evidence",
                                                           "signature"}


async def test_a_code_by_sms_goes_to_the_phone(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    document = await prepare(clinic, patient)
    sent = await send_code(clinic, patient, document["id"], channel="sms")
    assert sent.status == 202
    assert (await sent.json())["destination"].endswith(tuple("0123456789"))
    assert (await sign(clinic, patient, document["id"], outbox_code(clinic, "sms"))).status == 201


async def test_wrong_codes_count_and_the_sixth_attempt_is_refused(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    document = await prepare(clinic, patient)
    await send_code(clinic, patient, document["id"])
    right = outbox_code(clinic)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1, 0):
        response = await sign(clinic, patient, document["id"], wrong)
        assert response.status == 422
        problem = await response.json()
        assert problem["code"] == "otp_wrong"
        assert problem["attempts_left"] == left
        assert problem["errors"][0]["field"] == "code"
    sixth = await sign(clinic, patient, document["id"], right)  # even the right code: the attempts are used up
    assert sixth.status == 422
    assert (await sixth.json())["code"] == "otp_attempts_exhausted"
    await send_code(clinic, patient, document["id"])  # a new code works again
    assert (await sign(clinic, patient, document["id"], outbox_code(clinic))).status == 201


async def test_an_expired_code_is_refused(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    document = await prepare(clinic, patient)
    await send_code(clinic, patient, document["id"])
    async with transaction(clinic.app[keys.sessions]) as session:
        await session.execute(update(ConsentOtp).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    response = await sign(clinic, patient, document["id"], outbox_code(clinic))
    assert response.status == 422
    assert (await response.json())["code"] == "otp_expired"


async def test_a_used_code_does_not_sign_again_and_a_new_code_replaces_the_old(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    document = await prepare(clinic, patient)
    await send_code(clinic, patient, document["id"])
    first = outbox_code(clinic)
    await send_code(clinic, patient, document["id"])
    second = outbox_code(clinic)
    if first != second:
        old = await sign(clinic, patient, document["id"], first)
        assert old.status == 422
        assert (await old.json())["code"] == "otp_wrong"
    assert (await sign(clinic, patient, document["id"], second)).status == 201
    reused = await sign(clinic, patient, document["id"], second)
    assert reused.status == 409
    assert (await reused.json())["code"] == "already_signed"


async def test_a_code_for_another_document_does_not_sign_this_one(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    care = await prepare(clinic, patient, "telemedicine_care")
    recording = await prepare(clinic, patient, "recording")
    await send_code(clinic, patient, care["id"])
    care_code = outbox_code(clinic)
    await send_code(clinic, patient, recording["id"])
    recording_code = outbox_code(clinic)
    if care_code != recording_code:
        response = await sign(clinic, patient, recording["id"], care_code)
        assert response.status == 422
        assert (await response.json())["code"] == "otp_wrong"
    no_code = await prepare(clinic, patient, "personal_data")
    response = await sign(clinic, patient, no_code["id"], care_code)
    assert response.status == 422
    assert (await response.json())["code"] == "otp_missing"
    async with clinic.app[keys.read_sessions]() as session:
        otp = (await session.execute(ConsentOtp.__table__.select())).first()
        assert otp is not None
        assert care_code not in json.dumps([str(v) for v in otp])


async def test_codes_per_document_are_limited(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    document = await prepare(clinic, patient)
    for _ in range(5):
        assert (await send_code(clinic, patient, document["id"])).status == 202
    response = await send_code(clinic, patient, document["id"])
    assert response.status == 429
    assert (await response.json())["code"] == "too_many_codes"


async def test_bad_input_is_a_clear_problem(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    document = await prepare(clinic, patient)
    for body in ({"code": "12345"}, {"code": "abcdef"}, {"code": "123456", "extra": 1}, {}):
        response = await clinic.post(f"/api/v1/consent-documents/{document['id']}/sign", headers=patient.auth,
                                     json=body)
        assert response.status == 422, body
    response = await clinic.post("/api/v1/consent-documents", headers=patient.auth, json={"purpose": "marketing"})
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "purpose"


async def test_another_patients_document_and_consent_are_not_found(clinic: TestClient) -> None:
    owner, other = await register_patient(clinic), await register_patient(clinic)
    consent = await signed_consent(clinic, owner)
    for path in (f"/api/v1/consent-documents/{consent['document_id']}/pdf", f"/api/v1/consents/{consent['id']}",
                 f"/api/v1/consents/{consent['id']}/pdf", f"/api/v1/consents/{consent['id']}/verification",
                 f"/api/v1/consents/{consent['id']}/fhir"):
        assert (await clinic.get(path, headers=other.auth)).status == 404, path
    assert (await send_code(clinic, other, consent["document_id"])).status == 404
    assert (await clinic.post(f"/api/v1/consents/{consent['id']}/withdraw", headers=other.auth)).status == 404
    stranger = await create_staff(clinic, Role.physician)  # no consultation with this patient
    assert (await clinic.get(f"/api/v1/consents/{consent['id']}", headers=stranger.auth)).status == 404


# --- The gate -----------------------------------------------------------------------------------------------------


async def test_check_in_needs_every_required_consent(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, consented=False)
    client, patient = clinic["client"], clinic["patient"]
    path = f"/api/v1/consultations/{clinic['consultation']}/check-in"
    body = {"answers": _checkin_answers(clinic), "device_check": DEVICE}
    blocked = await client.post(path, headers=patient.auth, json=body)
    assert blocked.status == 409
    problem = await blocked.json()
    assert problem["code"] == "consent_required"
    assert {c["purpose"]: c["problem"] for c in problem["consents"]} == {
        "telemedicine_care": "missing", "personal_data": "missing", "recording": "missing"}
    status = await (await client.get("/api/v1/me/consents", headers=patient.auth)).json()
    assert status["may_start"] is False
    assert all(p["problem"] == "missing" for p in status["purposes"])
    for purpose in ("telemedicine_care", "personal_data"):
        await signed_consent(client, patient, purpose)
    still = await client.post(path, headers=patient.auth, json=body)
    assert [c["purpose"] for c in (await still.json())["consents"]] == ["recording"]
    await signed_consent(client, patient, "recording")
    assert (await client.post(path, headers=patient.auth, json=body)).status == 200


async def test_a_material_new_version_blocks_until_signed_again_a_minor_one_does_not(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client, patient = clinic["client"], clinic["patient"]
    boss = await admin(client)
    await _new_version(client, boss, "recording", material=False)
    status = await (await client.get("/api/v1/me/consents", headers=patient.auth)).json()
    assert status["may_start"] is True
    assert next(p for p in status["purposes"] if p["purpose"] == "recording")["current_version"] == 2
    await _new_version(client, boss, "recording", material=True)
    path = f"/api/v1/consultations/{clinic['consultation']}/check-in"
    body = {"answers": _checkin_answers(clinic), "device_check": DEVICE}
    blocked = await client.post(path, headers=patient.auth, json=body)
    assert blocked.status == 409
    assert (await blocked.json())["consents"] == [{"purpose": "recording", "problem": "outdated", "required": True}]
    renewed = await signed_consent(client, patient, "recording")
    assert renewed["template_version"] == 3
    assert (await client.post(path, headers=patient.auth, json=body)).status == 200


async def test_withdrawal_blocks_and_is_announced(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client, patient = clinic["client"], clinic["patient"]
    heard: list[services.Withdrawal] = []

    async def listener(event: services.Withdrawal) -> None:
        heard.append(event)

    client.app[keys.consent_withdrawals].subscribe(listener)
    mine = await (await client.get("/api/v1/me/consents", headers=patient.auth)).json()
    recording = next(c for c in mine["consents"] if c["purpose"] == "recording")
    response = await client.post(f"/api/v1/consents/{recording['id']}/withdraw", headers=patient.auth)
    assert response.status == 200
    withdrawn = await response.json()
    assert withdrawn["status"] == "inactive"
    assert withdrawn["withdrawn_at"]
    assert not withdrawn["current"]
    assert [(e.purpose, str(e.patient_id)) for e in heard] == [(ConsentPurpose.recording, patient.patient_id)]
    again = await client.post(f"/api/v1/consents/{recording['id']}/withdraw", headers=patient.auth)
    assert again.status == 409
    assert (await again.json())["code"] == "already_withdrawn"
    blocked = await client.post(f"/api/v1/consultations/{clinic['consultation']}/check-in", headers=patient.auth,
                                json={"answers": _checkin_answers(clinic), "device_check": DEVICE})
    assert (await blocked.json())["consents"] == [{"purpose": "recording", "problem": "withdrawn", "required": True}]
    kept = await client.get(f"/api/v1/consents/{recording['id']}/pdf", headers=patient.auth)
    assert kept.status == 200  # a withdrawn consent is kept, with its document


async def test_without_required_recording_a_patient_may_start_unrecorded(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, database_url,
                                                                       recording_required=False)))
    await seed_templates(client)
    patient = await register_patient(client)
    await sign_consents(client, patient, (ConsentPurpose.telemedicine_care, ConsentPurpose.personal_data))
    status = await (await client.get("/api/v1/me/consents", headers=patient.auth)).json()
    assert status["may_start"] is True
    assert status["may_record"] is False
    recording = next(p for p in status["purposes"] if p["purpose"] == "recording")
    assert recording == {**recording, "required": False, "problem": "missing"}


async def test_validity_and_required_level_are_the_clinics_choice(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(
        tmp_path, database_url, consent_validity_days=30, consent_required_level="enhanced_unqualified")))
    await seed_templates(client)
    patient = await register_patient(client)
    await sign_consents(client, patient)
    policy = client.app[keys.consent].policy
    async with client.app[keys.read_sessions]() as session:
        now = dt.datetime.now(dt.UTC)
        decision = await services.patient_gate(session, patient_id=uuid.UUID(patient.patient_id or ""),
                                               policy=policy, now=now)
        assert {s.problem.value for s in decision.statuses if s.problem} == {"level_too_low"}
        lenient = type(policy)(validity=policy.validity)
        assert (await services.patient_gate(session, patient_id=uuid.UUID(patient.patient_id or ""), policy=lenient,
                                            now=now)).may_start
        later = await services.patient_gate(session, patient_id=uuid.UUID(patient.patient_id or ""), policy=lenient,
                                            now=now + dt.timedelta(days=31))
        assert not later.may_start
        assert {s.problem.value for s in later.statuses if s.problem} == {"expired"}


async def test_the_waiting_room_queue_shows_consent_status(aiohttp_client: Any, tmp_path: Path,
                                                          database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client, patient, doctor = clinic["client"], clinic["patient"], clinic["doctor"]
    checked = await client.post(f"/api/v1/consultations/{clinic['consultation']}/check-in", headers=patient.auth,
                                json={"answers": _checkin_answers(clinic), "device_check": DEVICE})
    assert checked.status == 200
    queue = await (await client.get("/api/v1/physicians/me/waiting-room", headers=doctor.auth)).json()
    assert queue["items"][0]["consent"] == {"may_start": True, "may_record": True, "problems": []}
    mine = await (await client.get("/api/v1/me/consents", headers=patient.auth)).json()
    recording = next(c for c in mine["consents"] if c["purpose"] == "recording")
    await client.post(f"/api/v1/consents/{recording['id']}/withdraw", headers=patient.auth)
    queue = await (await client.get("/api/v1/physicians/me/waiting-room", headers=doctor.auth)).json()
    assert queue["items"][0]["consent"]["may_start"] is False
    assert queue["items"][0]["consent"]["problems"] == [
        {"purpose": "recording", "problem": "withdrawn", "required": True}]
    admitted = await client.post(f"/api/v1/consultations/{clinic['consultation']}/admit", headers=doctor.auth)
    assert admitted.status == 409
    assert (await admitted.json())["code"] == "consent_required"
    # The physician of this patient may read the consents (and the read is in the patient's access log).
    listed = await client.get(f"/api/v1/patients/{patient.patient_id}/consents", headers=doctor.auth)
    assert listed.status == 200
    assert len((await listed.json())["consents"]) == 3
    log = await (await client.get("/api/v1/me/access-log", headers=patient.auth)).json()
    assert any(entry["action"] == "consent.listed" for entry in log["items"])


def _checkin_answers(clinic: dict[str, Any]) -> dict[str, Any]:
    from tests.scheduling_helpers import benign_answers

    return benign_answers(clinic["catalogue"]["checkin"])


async def _new_version(client: TestClient, boss: Account, purpose: str, *, material: bool) -> dict[str, Any]:
    draft = await client.post("/api/v1/consent-templates", headers=boss.auth, json={
        "purpose": purpose, "title_ru": "Согласие на запись", "body_ru": f"Новый текст {material}",
        "title_en": "Consent to recording", "body_en": f"New text {material}"})
    assert draft.status == 201, await draft.text()
    template = await draft.json()
    published = await client.post(f"/api/v1/consent-templates/{template['id']}/publish", headers=boss.auth,
                                  json={"material": material})
    assert published.status == 200, await published.text()
    return dict(await published.json())


# --- Templates ----------------------------------------------------------------------------------------------------


async def test_admins_draft_preview_and_publish_and_published_versions_never_change(clinic: TestClient) -> None:
    boss = await admin(clinic)
    draft = await clinic.post("/api/v1/consent-templates", headers=boss.auth, json={
        "purpose": "personal_data", "title_ru": "Согласие", "body_ru": "## Раздел\n\n- пункт", "title_en": "Consent",
        "body_en": "## Part\n\n- item"})
    template = await draft.json()
    assert template["version"] == 2
    assert template["status"] == "draft"
    assert template["sha256"] is None
    edited = await clinic.put(f"/api/v1/consent-templates/{template['id']}", headers=boss.auth, json={
        "title_ru": "Согласие (ред.)", "body_ru": "Текст", "title_en": "Consent (ed.)", "body_en": "Text"})
    assert edited.status == 200
    assert (await edited.json())["title_ru"] == "Согласие (ред.)"
    preview = await clinic.get(f"/api/v1/consent-templates/{template['id']}/preview?language=en", headers=boss.auth)
    assert preview.status == 200
    assert (await preview.read()).startswith(b"%PDF-")
    patient = await register_patient(clinic)
    drafts_hidden = await (await clinic.get("/api/v1/consent-templates", headers=patient.auth)).json()
    assert all(t["status"] == "published" for t in drafts_hidden["items"])
    published = await (await clinic.post(f"/api/v1/consent-templates/{template['id']}/publish", headers=boss.auth,
                                         json={"material": True})).json()
    assert published["status"] == "published"
    assert len(published["sha256"]) == 64
    for method, suffix, body in (("PUT", "", {"title_ru": "x", "body_ru": "x", "title_en": "x", "body_en": "x"}),
                                 ("POST", "/publish", {"material": False})):
        response = await clinic.request(method, f"/api/v1/consent-templates/{template['id']}{suffix}",
                                        headers=boss.auth, json=body)
        assert response.status == 409
        assert (await response.json())["code"] == "template_published"
    forbidden = await clinic.post("/api/v1/consent-templates", headers=patient.auth, json={
        "purpose": "recording", "title_ru": "x", "body_ru": "x", "title_en": "x", "body_en": "x"})
    assert forbidden.status == 403


# --- Seal and verification ----------------------------------------------------------------------------------------

SEALED_CHANGES: dict[str, Any] = {
    "patient_id": lambda c: uuid.uuid4(),
    "purpose": lambda c: ConsentPurpose.personal_data,
    "template_version": lambda c: c.template_version + 1,
    "template_sha256": lambda c: "0" * 64,
    "document_sha256": lambda c: "1" * 64,
    "level": lambda c: SignatureLevel.enhanced_qualified,
    "evidence_sha256": lambda c: "2" * 64,
    "signed_at": lambda c: c.signed_at - dt.timedelta(days=1),
}


@pytest.mark.parametrize("field", sorted(SEALED_CHANGES))
async def test_changing_a_sealed_field_fails_verification_naming_it(clinic: TestClient, field: str) -> None:
    patient = await register_patient(clinic)
    consent = await signed_consent(clinic, patient)
    other = await register_patient(clinic)
    async with transaction(clinic.app[keys.sessions]) as session:
        stored = await session.get(Consent, uuid.UUID(consent["id"]))
        assert stored is not None
        if field == "patient_id":  # must still name a real patient (foreign key): another one
            stored.patient_id = uuid.UUID(other.patient_id or "")
        else:
            setattr(stored, field, SEALED_CHANGES[field](stored))
        await session.flush()
        result = await services.verify(session, stored, setup=clinic.app[keys.consent])
    assert not result.ok
    fields = next(c for c in result.checks if c.name == "fields")
    assert not fields.ok
    assert field in fields.detail


async def test_verification_names_a_changed_document_evidence_template_or_seal(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    consent = await signed_consent(clinic, patient)
    consent_id = uuid.UUID(consent["id"])
    tamperings = {
        "document": lambda s, c: s.execute(update(ConsentDocument).where(ConsentDocument.id == c.document_id)
                                           .values(pdf=b"%PDF-1.7 forged")),
        "evidence": lambda s, c: s.execute(update(Consent).where(Consent.id == c.id)
                                           .values(evidence={**c.evidence, "channel": "sms"})),
        "template": lambda s, c: s.execute(update(ConsentTemplate).where(ConsentTemplate.id == c.template_id)
                                           .values(body_ru="Другой текст")),
        "seal": lambda s, c: s.execute(update(Consent).where(Consent.id == c.id)
                                       .values(sealed_payload=c.sealed_payload.replace('"v":1', '"v":2'))),
    }
    for check, tamper in tamperings.items():
        async with clinic.app[keys.sessions]() as session:
            stored = await session.get(Consent, consent_id)
            assert stored is not None
            await tamper(session, stored)
            session.expire_all()
            stored = await session.get(Consent, consent_id)
            assert stored is not None
            result = await services.verify(session, stored, setup=clinic.app[keys.consent])
            await session.rollback()
        failed = {c.name for c in result.checks if not c.ok}
        assert check in failed, (check, result.checks)
    api = await (await clinic.get(f"/api/v1/consents/{consent_id}/verification", headers=patient.auth)).json()
    assert api["ok"]  # every tampering above was rolled back


async def test_the_seal_keys_are_published_for_auditors(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    consent = await signed_consent(clinic, patient)
    published = await (await clinic.get("/api/v1/consents/seal-keys")).json()
    key = next(k for k in published["keys"] if k["kid"] == consent["seal_key_id"])
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    async with clinic.app[keys.read_sessions]() as session:
        stored = await session.get(Consent, uuid.UUID(consent["id"]))
        assert stored is not None
        import base64

        public = load_pem_public_key(key["pem"].encode())
        assert isinstance(public, Ed25519PublicKey)
        public.verify(base64.b64decode(stored.seal), stored.sealed_payload.encode())  # raises if it does not hold


# --- Paper consent, FHIR ------------------------------------------------------------------------------------------


async def test_staff_attest_a_paper_consent_with_its_scan(aiohttp_client: Any, tmp_path: Path,
                                                          database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, consented=False)
    client, patient, doctor = clinic["client"], clinic["patient"], clinic["doctor"]
    made = await client.post("/api/v1/consent-documents", headers=doctor.auth,
                             json={"purpose": "telemedicine_care", "patient_id": patient.patient_id})
    assert made.status == 201, await made.text()
    document = await made.json()
    path = f"/api/v1/consent-documents/{document['id']}/paper?note=signed+at+reception"
    not_image = await client.post(path, headers={**doctor.auth, "Content-Type": "image/png"}, data=b"hello")
    assert not_image.status == 415
    too_big = await client.post(path, headers={**doctor.auth, "Content-Type": "image/png"},
                                data=io.BytesIO(PNG + b"\x00" * client.app[keys.consent].scan_max_bytes))
    assert too_big.status == 413
    by_patient = await client.post(path, headers={**patient.auth, "Content-Type": "image/png"}, data=PNG)
    assert by_patient.status == 403
    response = await client.post(path, headers={**doctor.auth, "Content-Type": "image/png"}, data=PNG)
    assert response.status == 201, await response.text()
    consent = await response.json()
    assert consent["level"] == "in_person"
    assert consent["evidence"]["note"] == "signed at reception"
    scan = await client.get(f"/api/v1/consents/{consent['id']}/signature", headers=patient.auth)
    assert scan.status == 200
    assert await scan.read() == PNG
    verified = await (await client.get(f"/api/v1/consents/{consent['id']}/verification", headers=doctor.auth)).json()
    assert verified["ok"], verified


async def test_fhir_export_is_a_valid_r4_consent_with_the_signed_pdf(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    consent = await signed_consent(clinic, patient, "personal_data")
    response = await clinic.get(f"/api/v1/consents/{consent['id']}/fhir", headers=patient.auth)
    assert response.status == 200
    assert response.content_type == "application/fhir+json"
    resource = await response.json(content_type=None)
    parsed = FhirConsent.model_validate(resource)
    assert parsed.status == "active"
    assert parsed.patient is not None
    assert parsed.patient.reference == f"Patient/{patient.patient_id}"
    pdf = await (await clinic.get(f"/api/v1/consents/{consent['id']}/pdf", headers=patient.auth)).read()
    import base64
    import hashlib

    attachment = resource["sourceAttachment"]
    assert base64.b64decode(attachment["data"]) == pdf
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(pdf).digest()).decode()  # noqa: S324  # FHIR R4's choice
    await clinic.post(f"/api/v1/consents/{consent['id']}/withdraw", headers=patient.auth)
    withdrawn = await (await clinic.get(f"/api/v1/consents/{consent['id']}/fhir", headers=patient.auth)).json(
        content_type=None)
    assert withdrawn["status"] == "inactive"


# --- Edges found in review ----------------------------------------------------------------------------------------


async def test_a_code_that_could_not_be_sent_does_not_use_up_the_allowance(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    from tests.services import free_port

    dead_smtp = make_settings(tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=free_port(),
                              smtp_starttls=False)
    client: TestClient = await aiohttp_client(create_app(dead_smtp))
    await seed_templates(client)
    patient = await register_patient(client)
    document = await prepare(client, patient)
    for _ in range(7):  # more than the hourly allowance: none of them counted
        response = await send_code(client, patient, document["id"])
        assert response.status == 503
        assert (await response.json())["code"] == "code_not_sent"
    async with client.app[keys.read_sessions]() as session:
        assert (await session.execute(ConsentOtp.__table__.select())).first() is None
    assert (await send_code(client, patient, document["id"], channel="sms")).status == 202  # SMS still works


async def test_staff_reading_or_preparing_a_document_is_in_the_patients_access_log(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, consented=False)
    client, patient, doctor = clinic["client"], clinic["patient"], clinic["doctor"]
    missing = await client.post("/api/v1/consent-documents", headers=doctor.auth, json={"purpose": "recording"})
    assert missing.status == 422
    assert (await missing.json())["errors"][0]["field"] == "patient_id"
    made = await client.post("/api/v1/consent-documents", headers=doctor.auth,
                             json={"purpose": "recording", "patient_id": patient.patient_id})
    document = await made.json()
    assert (await client.get(document["pdf_url"], headers=doctor.auth)).status == 200
    log = await (await client.get("/api/v1/me/access-log", headers=patient.auth)).json()
    actions = {entry["action"] for entry in log["items"]}
    assert {"consent_document.prepared", "consent_document.downloaded"} <= actions


async def test_a_long_address_an_odd_browser_and_a_replaced_text_are_handled(clinic: TestClient) -> None:
    long_email = "p@" + "a-rather-long-subdomain-of-the-clinic." * 3 + "example.org"
    patient = await register_patient(clinic, email=long_email)
    document = await prepare(clinic, patient)
    sent = await send_code(clinic, patient, document["id"])
    assert sent.status == 202, await sent.text()
    assert len((await sent.json())["destination"]) <= 64
    boss = await admin(clinic)
    await _new_version(clinic, boss, "telemedicine_care", material=False)
    outdated = await sign(clinic, patient, document["id"], outbox_code(clinic))
    assert outdated.status == 409
    assert (await outdated.json())["code"] == "document_outdated"
    fresh = await prepare(clinic, patient)
    assert fresh["template_version"] == 2
    await send_code(clinic, patient, fresh["id"])
    signed = await clinic.post(f"/api/v1/consent-documents/{fresh['id']}/sign", json={"code": outbox_code(clinic)},
                               headers={**patient.auth, "User-Agent": "Mozilla\u00ff test"})
    assert signed.status == 201, await signed.text()
    assert (await signed.json())["evidence"]["user_agent"].startswith("Mozilla")


def test_evidence_from_undecodable_header_bytes_is_still_valid_text() -> None:
    from consent import rules, signing

    evidence = signing._client_evidence(signing.Client(None, "Mozilla \udcff\udcfe\x01"))  # surrogateescape
    assert rules.canonical_json(evidence)  # encodes: the seal can be made
    assert evidence["user_agent"] == "Mozilla ???"


async def test_damaged_rows_are_reported_not_crashed_on(clinic: TestClient) -> None:
    patient = await register_patient(clinic)
    consent = await signed_consent(clinic, patient)
    async with transaction(clinic.app[keys.sessions]) as session:
        await session.execute(update(Consent).where(Consent.id == uuid.UUID(consent["id"])).values(evidence=["x"]))
        await session.execute(update(ConsentDocument).where(ConsentDocument.id == uuid.UUID(consent["document_id"]))
                              .values(pdf=b"%PDF-1.7 replaced"))
    verification = await clinic.get(f"/api/v1/consents/{consent['id']}/verification", headers=patient.auth)
    assert verification.status == 200
    failed = {c["name"] for c in (await verification.json())["checks"] if not c["ok"]}
    assert {"document", "evidence", "signature"} <= failed
    exported = await clinic.get(f"/api/v1/consents/{consent['id']}/fhir", headers=patient.auth)
    assert exported.status == 409
    assert (await exported.json())["code"] == "consent_damaged"


async def test_the_document_carries_the_clinics_date_not_utcs(clinic: TestClient) -> None:
    from pypdf import PdfReader

    from consent import signing

    patient = await register_patient(clinic)
    actor = signing.Actor(uuid.UUID(patient.user_id), Role.patient, uuid.UUID(patient.patient_id or ""))
    late_evening_utc = dt.datetime(2026, 11, 22, 22, 30, tzinfo=dt.UTC)  # already the 23rd in Moscow
    async with transaction(clinic.app[keys.sessions]) as session:
        document = await signing.prepare(session, patient_id=actor.patient_id or uuid.uuid4(),
                                         purpose=ConsentPurpose.recording, language="ru", actor=actor,
                                         ctx=AuditContext(actor_role="patient"), setup=clinic.app[keys.consent],
                                         now=late_evening_utc)
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(document.pdf)).pages)
    assert "23.11.2026" in text
    assert "22.11.2026" not in text
