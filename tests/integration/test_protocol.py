"""The physician's protocol through the API: what primary and repeat consultations may carry, autosave with
optimistic concurrency, signing (session and CMS) that documents the consultation, amendments, verification
of the stored PDF, who may read it, and the audit entries every read leaves."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.utils import base64url_decode
from sqlalchemy import select, update

from consent.rules import canonical_json
from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.db.engine import transaction
from server.records.models import ProtocolDocument, ProtocolVersion
from server.records.services import signed_versions
from tests.consent_helpers import sign_consents
from tests.factories import Account, create_staff, register_patient
from tests.integration.test_pages import form_login, form_token, page_token
from tests.pki import Pki, make_pki, sign_document
from tests.scheduling_helpers import benign_answers, booked_clinic, booking, free_slot

EN = {"Accept-Language": "en"}
DEVICES = {"camera": True, "microphone": True, "speaker": True, "browser": "Chromium 156"}
NOTES = {"complaints": "Кашель третий день, температура 37,8", "anamnesis": "Заболел после переохлаждения",
         "reported_and_shown": "Показал горло на камеру: гиперемия", "assessment": "Похоже на ОРВИ",
         "recommendations": {"in_person_visit": True, "tests": True, "tests_detail": "Общий анализ крови",
                             "text": "Обильное питьё"},
         "follow_up": "Повторная консультация через 5 дней"}
REPEAT = {**NOTES, "diagnosis": {"icd10": "i10", "text": "Эссенциальная гипертензия"},
          "prescriptions": [{"drug": "Лизиноприл", "dose": "10 мг", "route": "внутрь", "frequency": "1 раз в день",
                             "duration": "30 дней", "notes": "утром"}]}


async def _through_call(client: TestClient, consultation: str, patient: Account, doctor: Account,
                        checkin: Any, *, finish: bool = True) -> None:
    """Check-in, admission and (unless told) the end of the call, through the real endpoints."""
    checked = await client.post(f"/api/v1/consultations/{consultation}/check-in", headers=patient.auth,
                                json={"answers": benign_answers(checkin), "device_check": DEVICES})
    assert checked.status == 200, await checked.text()
    admitted = await client.post(f"/api/v1/consultations/{consultation}/admit", headers=doctor.auth)
    assert admitted.status == 200, await admitted.text()
    if finish:
        finished = await client.post(f"/api/v1/consultations/{consultation}/finish", headers=doctor.auth)
        assert finished.status == 200, await finished.text()


async def _clinic(aiohttp_client: Any, tmp_path: Path, database_url: str, *, finish: bool = True,
                  **settings: Any) -> dict[str, Any]:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, **settings)
    await _through_call(clinic["client"], clinic["consultation"], clinic["patient"], clinic["doctor"],
                        clinic["catalogue"]["checkin"], finish=finish)
    return clinic


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A primary consultation whose call has ended."""
    return await _clinic(aiohttp_client, tmp_path, database_url)


async def _repeat_consultation(clinic: dict[str, Any]) -> str:
    """A repeat consultation (hypertension, diagnosed in person here) with the same physician, call ended."""
    client, doctor = clinic["client"], clinic["doctor"]
    patient = await register_patient(client, full_name="Анна Повторная")
    await sign_consents(client, patient)
    recorded = await client.post(f"/api/v1/patients/{patient.patient_id}/diagnoses", headers=doctor.auth,
                                 json={"condition_code": "hypertension", "diagnosed_on": "2025-02-01"})
    assert recorded.status == 201, await recorded.text()
    starts_at = await free_slot(client, patient, clinic["physician_id"])
    made = await client.post("/api/v1/consultations", headers=patient.auth, json=booking(
        clinic["physician_id"], starts_at, benign_answers(clinic["catalogue"]["cardiovascular"]),
        condition="hypertension", kind="repeat"))
    assert made.status == 201, await made.text()
    consultation = str((await made.json())["id"])
    await _through_call(client, consultation, patient, doctor, clinic["catalogue"]["checkin"])
    clinic["repeat_patient"] = patient
    return consultation


def _url(consultation: str, tail: str = "") -> str:
    return f"/api/v1/consultations/{consultation}/protocol{tail}"


async def _save(client: TestClient, doctor: Account, consultation: str, content: dict[str, Any],
                version: int | None = None) -> Any:
    headers = {**doctor.auth, **({"If-Match": f'"{version}"'} if version is not None else {})}
    return await client.put(_url(consultation, "/draft"), headers=headers, json=content)


async def _sign(client: TestClient, doctor: Account, consultation: str, *, cms: bytes | None = None,
                language: str = "ru") -> tuple[dict[str, Any], bytes]:
    prepared = await client.post(_url(consultation, "/prepare"), headers=doctor.auth, json={"language": language})
    assert prepared.status == 201, await prepared.text()
    document = await prepared.json()
    pdf = await (await client.get(document["pdf_url"], headers=doctor.auth)).read()
    assert hashlib.sha256(pdf).hexdigest() == document["sha256"]
    body: dict[str, Any] = {"document_id": document["id"]}
    if cms is not None:
        body["signature_cms_base64"] = base64.b64encode(cms).decode()
    signed = await client.post(_url(consultation, "/sign"), headers=doctor.auth, json=body)
    assert signed.status == 201, await signed.text()
    return await signed.json(), pdf


async def _status(client: TestClient, account: Account, consultation: str) -> str:
    return str((await (await client.get(f"/api/v1/consultations/{consultation}", headers=account.auth)).json())
               ["status"])


async def _audit(client: TestClient, action: str) -> list[AuditEntry]:
    async with transaction(client.app[keys.sessions]) as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                           .order_by(AuditEntry.seq))).all())


async def test_primary_consultation_refuses_diagnosis_and_prescriptions(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    refused = await _save(client, doctor, consultation, {**NOTES, "diagnosis": {"icd10": "J06.9", "text": "ОРВИ"}})
    assert refused.status == 422
    problem = await refused.json()
    assert problem["type"] == "/problems/primary_consultation_no_diagnosis"
    assert problem["errors"] == [{"field": "diagnosis", "message": problem["errors"][0]["message"],
                                  "type": "primary_consultation_no_diagnosis"}]
    both = await _save(client, doctor, consultation, {**REPEAT})
    problem = await both.json()
    assert both.status == 422
    assert problem["rules"] == ["primary_consultation_no_diagnosis", "primary_consultation_no_prescription"]
    assert [e["field"] for e in problem["errors"]] == ["diagnosis", "prescriptions"]
    only = await _save(client, doctor, consultation, {**NOTES, "prescriptions": REPEAT["prescriptions"]})
    assert (await only.json())["code"] == "primary_consultation_no_prescription"
    # Nothing was stored, and every refusal is in the audit log for QA to sample.
    assert (await (await client.get(_url(consultation), headers=doctor.auth)).json())["draft"] is None
    entries = await _audit(client, "protocol.forbidden_field_refused")
    assert len(entries) == 3
    assert entries[1].detail["fields"] == ["diagnosis", "prescriptions"]
    assert entries[1].object_id == consultation
    assert entries[1].outcome == "failure"
    assert "Лизиноприл" not in json.dumps([e.detail for e in entries], ensure_ascii=False)  # codes, no PHI


async def test_repeat_consultation_accepts_diagnosis_and_prescriptions(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    consultation = await _repeat_consultation(clinic)
    saved = await _save(client, doctor, consultation, {**REPEAT, "diagnosis": {"icd10": "I1O", "text": "ГБ"}})
    assert saved.status == 200, await saved.text()
    draft = await saved.json()
    assert draft["content"]["prescriptions"][0]["drug"] == "Лизиноприл"
    assert [(p["field"], p["type"]) for p in draft["problems"]] == [("diagnosis.icd10", "icd10_format")]
    refused = await client.post(_url(consultation, "/prepare"), headers=doctor.auth, json={})
    assert refused.status == 422
    assert (await refused.json())["errors"][0]["field"] == "diagnosis.icd10"
    fixed = await _save(client, doctor, consultation, REPEAT, version=draft["version"])
    assert fixed.status == 200, await fixed.text()
    assert (await fixed.json())["problems"] == []
    version, pdf = await _sign(client, doctor, consultation, language="en")
    assert version["content"]["diagnosis"] == {"icd10": "I10", "text": "Эссенциальная гипертензия"}  # normalised
    assert pdf.startswith(b"%PDF-")
    assert await _status(client, doctor, consultation) == "documented"


async def test_autosave_is_idempotent_and_refuses_a_stale_version(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    first = await _save(client, doctor, consultation, {"complaints": "Кашель"})
    assert first.status == 200, await first.text()
    assert first.headers["ETag"] == '"1"'
    again = await _save(client, doctor, consultation, {"complaints": "Кашель"}, version=1)
    assert (await again.json())["version"] == 1  # the same content: nothing changed
    second = await _save(client, doctor, consultation, NOTES, version=1)
    assert second.headers["ETag"] == '"2"'
    retried = await _save(client, doctor, consultation, NOTES, version=1)  # a retry whose answer was lost
    assert retried.status == 200
    assert (await retried.json())["version"] == 2
    stale = await _save(client, doctor, consultation, {**NOTES, "follow_up": "другая вкладка"}, version=1)
    assert stale.status == 412
    assert (await stale.json())["code"] == "draft_outdated"
    assert (await stale.json())["current_version"] == 2
    garbage = await client.put(_url(consultation, "/draft"), headers={**doctor.auth, "If-Match": "*"},
                               json={**NOTES, "follow_up": "?"})
    assert garbage.status == 412
    assert garbage.headers["ETag"] == '"2"'
    by_body = await client.put(_url(consultation, "/draft"), headers=doctor.auth,
                               json={**NOTES, "follow_up": "через неделю", "version": 2})
    assert by_body.status == 200
    missing = await _save(client, doctor, consultation, {**NOTES, "follow_up": "?"})
    assert missing.status == 428
    read = await (await client.get(_url(consultation), headers=doctor.auth)).json()
    assert read["draft"]["content"]["follow_up"] == "через неделю"
    assert read["draft"]["version"] == 3


async def test_drafting_starts_in_the_call_and_signing_waits_for_its_end(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await _clinic(aiohttp_client, tmp_path, database_url, finish=False)
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    assert (await _save(client, doctor, consultation, NOTES)).status == 200
    prepared = await (await client.post(_url(consultation, "/prepare"), headers=doctor.auth, json={})).json()
    early = await client.post(_url(consultation, "/sign"), headers=doctor.auth, json={"document_id": prepared["id"]})
    assert early.status == 409
    assert (await early.json())["code"] == "consultation_not_completed"
    assert (await client.post(f"/api/v1/consultations/{consultation}/finish", headers=doctor.auth)).status == 200
    signed = await client.post(_url(consultation, "/sign"), headers=doctor.auth, json={"document_id": prepared["id"]})
    assert signed.status == 201, await signed.text()


async def test_session_signature_documents_the_consultation_and_verifies(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _save(client, doctor, consultation, NOTES)
    version, pdf = await _sign(client, doctor, consultation)
    assert version["level"] == "server_session"
    assert version["version"] == 1
    assert version["pdf_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert version["pdf_size"] == len(pdf)
    assert version["evidence"]["pdf_sha256"] == version["pdf_sha256"]
    assert version["evidence"]["token_id"]
    assert version["evidence"]["session_id"]
    assert await _status(client, doctor, consultation) == "documented"
    assert [e.object_id for e in await _audit(client, "consultation.documented")] == [consultation]

    downloaded = await (await client.get(version["pdf_url"], headers=doctor.auth)).read()
    assert downloaded == pdf
    verified = await (await client.get(version["verification_url"], headers=doctor.auth)).json()
    assert verified["ok"], verified
    # Anyone with the clinic's published key can check the seal: rebuild the payload and verify Ed25519.
    async with transaction(client.app[keys.sessions]) as session:
        stored = (await signed_versions(session, consultation_id=uuid.UUID(consultation)))[0]
        row = await session.get(ProtocolVersion, stored.id)
        assert row is not None
        payload, seal, kid = row.sealed_payload, row.seal, row.seal_key_id
    assert (stored.version, stored.pdf_sha256, stored.pdf_size, stored.level) == (
        1, version["pdf_sha256"], len(pdf), "server_session")
    jwks = (await (await client.get("/api/v1/consents/seal-keys")).json())["keys"]
    key = Ed25519PublicKey.from_public_bytes(base64url_decode(next(k for k in jwks if k["kid"] == kid)["x"]))
    sealed = json.loads(payload)
    key.verify(base64.b64decode(seal), canonical_json(sealed))
    assert sealed["pdf_sha256"] == version["pdf_sha256"]
    assert sealed["evidence"]["session_id"] == version["evidence"]["session_id"]


async def test_a_tampered_pdf_does_not_verify(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _save(client, doctor, consultation, NOTES)
    version, pdf = await _sign(client, doctor, consultation)
    changed = bytearray(pdf)
    changed[len(changed) // 2] ^= 0x01
    async with transaction(client.app[keys.sessions]) as session:
        await session.execute(update(ProtocolDocument).where(ProtocolDocument.sha256 == version["pdf_sha256"])
                              .values(pdf=bytes(changed)))
    verified = await (await client.get(version["verification_url"], headers=doctor.auth)).json()
    assert not verified["ok"]
    failed = {c["name"] for c in verified["checks"] if not c["ok"]}
    assert failed == {"document"}


async def test_amendment_is_a_new_version_and_keeps_the_old_one(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _save(client, doctor, consultation, NOTES)
    first, first_pdf = await _sign(client, doctor, consultation)
    blocked = await _save(client, doctor, consultation, {**NOTES, "assessment": "Бронхит"}, version=99)
    assert (await blocked.json())["code"] == "amendment_required"
    opened = await client.post(_url(consultation, "/amendments"), headers=doctor.auth,
                               json={"reason": "Уточнено заключение"})
    assert opened.status == 201, await opened.text()
    draft = await opened.json()
    assert draft["content"]["assessment"] == NOTES["assessment"]  # starts from what was signed
    saved = await _save(client, doctor, consultation, {**NOTES, "assessment": "Острый бронхит"},
                        version=draft["version"])
    assert saved.status == 200, await saved.text()
    second, second_pdf = await _sign(client, doctor, consultation)
    assert second["version"] == 2
    assert second["amendment_reason"] == "Уточнено заключение"
    assert second_pdf != first_pdf
    protocol = await (await client.get(_url(consultation), headers=doctor.auth)).json()
    assert [v["version"] for v in protocol["versions"]] == [1, 2]
    assert protocol["versions"][0]["content"]["assessment"] == NOTES["assessment"]
    assert protocol["versions"][0]["pdf_sha256"] == first["pdf_sha256"]
    assert await (await client.get(first["pdf_url"], headers=doctor.auth)).read() == first_pdf
    for item in (first, second):
        assert (await (await client.get(item["verification_url"], headers=doctor.auth)).json())["ok"]
    assert await _status(client, doctor, consultation) == "documented"


async def test_only_the_patient_and_the_physician_read_it_and_every_read_is_audited(
        clinic: dict[str, Any]) -> None:
    client, doctor, patient, consultation = (clinic["client"], clinic["doctor"], clinic["patient"],
                                             clinic["consultation"])
    await _save(client, doctor, consultation, NOTES)
    before = len(await _audit(client, "protocol.read"))
    mine = await (await client.get(_url(consultation), headers=patient.auth)).json()
    assert mine["draft"] is None
    assert mine["versions"] == []
    version, pdf = await _sign(client, doctor, consultation)
    mine = await (await client.get(_url(consultation), headers=patient.auth)).json()
    assert [v["version"] for v in mine["versions"]] == [1]
    assert "session_id" not in mine["versions"][0]["evidence"]  # the physician's session is for auditors
    assert mine["versions"][0]["evidence"]["pdf_sha256"] == version["pdf_sha256"]
    assert await (await client.get(version["pdf_url"], headers=patient.auth)).read() == pdf
    reads = await _audit(client, "protocol.read")
    assert len(reads) - before == 2
    assert reads[-1].actor_user_id == uuid.UUID(patient.user_id)
    assert reads[-1].subject_patient_id == uuid.UUID(patient.patient_id or "")
    assert [e.object_id for e in await _audit(client, "protocol.downloaded")][-1] == version["id"]
    assert (await client.put(_url(consultation, "/draft"), headers=patient.auth, json=NOTES)).status == 403

    other_doctor = await create_staff(client, Role.physician)
    other_patient = await register_patient(client)
    for stranger in (other_doctor, other_patient):
        for path in (_url(consultation), version["pdf_url"], version["verification_url"]):
            response = await client.get(path, headers=stranger.auth)
            assert response.status == 404, (stranger.role, path)
    assert (await client.put(_url(consultation, "/draft"), headers=other_doctor.auth, json=NOTES)).status == 404
    sign = await client.post(_url(consultation, "/prepare"), headers=other_doctor.auth, json={})
    assert sign.status == 404


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("Protocol Test")


async def test_enhanced_cms_signature_signs_and_verifies(aiohttp_client: Any, tmp_path: Path, database_url: str,
                                                         pki: Pki) -> None:
    root, intermediate = pki.write(tmp_path / "ca")
    clinic = await _clinic(aiohttp_client, tmp_path, database_url, consent_trust_anchors=[root],
                           consent_intermediates=[intermediate])
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _save(client, doctor, consultation, NOTES)
    prepared = await (await client.post(_url(consultation, "/prepare"), headers=doctor.auth, json={})).json()
    pdf = await (await client.get(prepared["pdf_url"], headers=doctor.auth)).read()
    certificate = pki.patient(email=doctor.email)

    someone_else = sign_document(pdf, pki.patient(email="other@clinic.example"), tmp_path / "other",
                                 chain=pki.intermediate)
    refused = await client.post(_url(consultation, "/sign"), headers=doctor.auth, json={
        "document_id": prepared["id"], "signature_cms_base64": base64.b64encode(someone_else).decode()})
    assert refused.status == 422
    assert (await refused.json())["code"] == "subject_mismatch"
    assert await _status(client, doctor, consultation) == "completed"

    signature = sign_document(pdf, certificate, tmp_path / "sig", chain=pki.intermediate)
    signed = await client.post(_url(consultation, "/sign"), headers=doctor.auth, json={
        "document_id": prepared["id"], "signature_cms_base64": base64.b64encode(signature).decode()})
    assert signed.status == 201, await signed.text()
    version = await signed.json()
    assert version["level"] == "enhanced_unqualified"
    assert version["evidence"]["certificate_sha256"] == hashlib.sha256(certificate.der).hexdigest()
    assert await _status(client, doctor, consultation) == "documented"
    stored = await client.get(_url(consultation, f"/versions/{version['id']}/signature"), headers=doctor.auth)
    assert await stored.read() == signature
    verified = await (await client.get(version["verification_url"], headers=doctor.auth)).json()
    assert verified["ok"], verified
    assert "enhanced signature by" in next(c for c in verified["checks"] if c["name"] == "signature")["detail"]

    changed = bytearray(pdf)
    changed[len(changed) // 3] ^= 0x01
    async with transaction(client.app[keys.sessions]) as session:
        await session.execute(update(ProtocolDocument).where(ProtocolDocument.id == uuid.UUID(prepared["id"]))
                              .values(pdf=bytes(changed)))
    tampered = await (await client.get(version["verification_url"], headers=doctor.auth)).json()
    assert not tampered["ok"]
    assert {c["name"] for c in tampered["checks"] if not c["ok"]} == {"document", "signature"}


async def test_prepare_gives_the_same_pdf_for_the_same_draft(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _save(client, doctor, consultation, NOTES)
    one = await (await client.post(_url(consultation, "/prepare"), headers=doctor.auth, json={})).json()
    two = await (await client.post(_url(consultation, "/prepare"), headers=doctor.auth, json={})).json()
    assert one == two
    await _save(client, doctor, consultation, {**NOTES, "follow_up": "через 3 дня"}, version=1)
    outdated = await client.post(_url(consultation, "/sign"), headers=doctor.auth, json={"document_id": one["id"]})
    assert outdated.status == 409
    assert (await outdated.json())["code"] == "document_outdated"


# --- the physician's page -----------------------------------------------------------------------------

async def _page_login(client: TestClient, account: Account) -> None:
    response = await form_login(client, account.email)
    assert response.status == 303, await response.text()


async def test_protocol_page_renders_and_the_form_saves_and_signs(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _page_login(client, doctor)
    detail = await (await client.get(f"/clinic/consultations/{consultation}", headers=EN)).text()
    assert f'href="/clinic/consultations/{consultation}/protocol"' in detail
    page = await client.get(f"/clinic/consultations/{consultation}/protocol", headers=EN)
    assert page.status == 200
    html = await page.text()
    assert 'data-testid="protocol-form"' in html
    assert 'name="diagnosis-icd10"' not in html  # a primary consultation's form has no diagnosis or prescriptions
    assert "Кашель и насморк третий день" in html  # what the patient said at booking is not asked again
    assert "/static/protocol.js" in html
    token = form_token(html)

    form = {"csrf_token": token, "version": "", "complaints": NOTES["complaints"], "assessment": "ОРВИ",
            "in_person_visit": "on", "recommendations": "Питьё", "action": "save"}
    saved = await client.post(f"/clinic/consultations/{consultation}/protocol", data=form, headers=EN,
                              allow_redirects=False)
    assert saved.status == 303, await saved.text()
    protocol = await (await client.get(_url(consultation), headers=doctor.auth)).json()
    assert protocol["draft"]["content"]["recommendations"]["in_person_visit"] is True
    assert protocol["draft"]["version"] == 1

    signed = await client.post(f"/clinic/consultations/{consultation}/protocol", headers=EN, allow_redirects=False,
                               data={**form, "version": "1", "follow_up": "Через 5 дней", "action": "sign"})
    assert signed.status == 303, await signed.text()
    assert await _status(client, doctor, consultation) == "documented"
    html = await (await client.get(f"/clinic/consultations/{consultation}/protocol", headers=EN)).text()
    assert 'data-testid="version-row" data-version="1"' in html
    assert 'data-testid="open-amendment"' in html
    link = re.search(r'href="(/api/v1/consultations/[^"]+/pdf)" data-testid="version-pdf"', html)
    assert link is not None
    pdf = await client.get(link.group(1))  # the browser's cookie is enough to download it
    assert pdf.status == 200
    assert (await pdf.read()).startswith(b"%PDF-")
    version = (await (await client.get(_url(consultation), headers=doctor.auth)).json())["versions"][0]
    assert version["level"] == "server_session"
    assert version["content"]["follow_up"] == "Через 5 дней"

    amended = await client.post(f"/clinic/consultations/{consultation}/protocol/amend", headers=EN,
                                data={"csrf_token": token, "reason": "Уточнение"}, allow_redirects=False)
    assert amended.status == 303
    html = await (await client.get(f"/clinic/consultations/{consultation}/protocol", headers=EN)).text()
    assert 'data-testid="amendment-reason"' in html


async def test_protocol_page_refuses_a_crafted_diagnosis_for_a_primary_consultation(clinic: dict[str, Any]) -> None:
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _page_login(client, doctor)
    token = await page_token(client, f"/clinic/consultations/{consultation}/protocol")
    refused = await client.post(f"/clinic/consultations/{consultation}/protocol", headers=EN, data={
        "csrf_token": token, "complaints": "Кашель", "diagnosis-icd10": "J06.9", "diagnosis-text": "ОРВИ",
        "rx-0-drug": "Амоксициллин", "action": "save"})
    assert refused.status == 422
    html = await refused.text()
    assert "На первичной консультации нельзя устанавливать диагноз и назначать лечение" in html
    assert "Кашель" in html  # what was typed is shown again
    entries = await _audit(client, "protocol.forbidden_field_refused")
    assert entries[-1].detail["fields"] == ["diagnosis", "prescriptions"]


async def test_protocol_page_for_a_repeat_consultation_has_diagnosis_and_prescriptions(
        clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    consultation = await _repeat_consultation(clinic)
    await _page_login(client, doctor)
    html = await (await client.get(f"/clinic/consultations/{consultation}/protocol", headers=EN)).text()
    assert 'name="diagnosis-icd10" value="I10"' in html  # the condition's code, to confirm or correct
    assert 'name="rx-0-drug"' in html
    assert 'name="rx-1-drug"' in html


async def test_autosave_as_the_page_script_does_it(clinic: dict[str, Any]) -> None:
    """Cookie authentication with the CSRF header, If-Match from the page, as protocol.js sends it."""
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _page_login(client, doctor)
    html = await (await client.get(f"/clinic/consultations/{consultation}/protocol", headers=EN)).text()
    csrf = re.search(r'data-csrf="([^"]+)"', html)
    assert csrf is not None
    api = re.search(r'data-autosave="([^"]+)"', html)
    assert api is not None
    assert api.group(1) == _url(consultation, "/draft")
    headers = {"X-CSRF-Token": csrf.group(1), "Accept": "application/json"}
    first = await client.put(api.group(1), json={"complaints": "Кашель"}, headers=headers)
    assert first.status == 200, await first.text()
    second = await client.put(api.group(1), json={"complaints": "Кашель, насморк"},
                              headers={**headers, "If-Match": first.headers["ETag"]})
    assert second.status == 200
    forged = await client.put(api.group(1), json={"complaints": "x"}, headers={"If-Match": second.headers["ETag"]})
    assert forged.status == 403  # no CSRF header: not the page's script


async def test_protocol_page_is_404_for_another_physician(clinic: dict[str, Any]) -> None:
    client, consultation = clinic["client"], clinic["consultation"]
    other = await create_staff(clinic["client"], Role.physician)
    await _page_login(client, other)
    response = await client.get(f"/clinic/consultations/{consultation}/protocol", headers=EN)
    assert response.status == 404
    assert "Кашель" not in await response.text()
