"""Enhanced e-signatures through the API: a test PKI built here, signatures made by the real `openssl cms`
over the PDF the server rendered, and every way a signature can be wrong refused with its reason."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.conftest import make_settings
from tests.consent_helpers import seed_templates
from tests.factories import PASSWORD, Account, login, register_patient
from tests.pki import QUALIFIED_POLICY, Issued, KeyUsageProfile, Pki, make_pki, sign_document, utcnow

EMAIL = "anna.signer@example.org"
SNILS = "11223344595"


@dataclass(frozen=True)
class Certificates:
    valid: Issued
    qualified: Issued
    expired: Issued
    not_yet_valid: Issued
    encipherment: Issued
    revoked: Issued
    other_patient: Issued
    foreign: Issued  # from a CA the clinic does not trust
    with_snils: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("Clinic Test")


@pytest.fixture(scope="module")
def certificates(pki: Pki) -> Certificates:
    import datetime as dt

    now = utcnow()
    return Certificates(
        valid=pki.patient(email=EMAIL),
        qualified=pki.patient(email=EMAIL, policies=[QUALIFIED_POLICY]),
        expired=pki.patient(email=EMAIL, not_before=now - dt.timedelta(days=400),
                            not_after=now - dt.timedelta(days=1)),
        not_yet_valid=pki.patient(email=EMAIL, not_before=now + dt.timedelta(days=1)),
        encipherment=pki.patient(email=EMAIL, key_usage=KeyUsageProfile.encipherment),
        revoked=pki.patient(email=EMAIL),
        other_patient=pki.patient(email="someone.else@example.org"),
        foreign=make_pki("Elsewhere").patient(email=EMAIL),
        with_snils=pki.patient(email="different@example.org", snils=SNILS),
    )


def trust_settings(pki: Pki, certificates: Certificates, folder: Path, **extra: Any) -> dict[str, Any]:
    root, intermediate = pki.write(folder / "ca")
    crl = folder / "ca" / "issuing.crl"
    crl.write_bytes(pki.crl(revoked=[certificates.revoked.serial_number]))
    return {"consent_trust_anchors": [root], "consent_intermediates": [intermediate], "consent_crls": [crl],
            "consent_qualified_policy_oids": [QUALIFIED_POLICY], **extra}


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str, pki: Pki,
                 certificates: Certificates) -> TestClient:
    settings = make_settings(tmp_path, database_url, **trust_settings(pki, certificates, tmp_path))
    client: TestClient = await aiohttp_client(create_app(settings))
    await seed_templates(client)
    return client


async def document_for(client: TestClient, patient: Account) -> tuple[str, bytes]:
    made = await client.post("/api/v1/consent-documents", headers=patient.auth, json={"purpose": "telemedicine_care"})
    assert made.status == 201, await made.text()
    document = await made.json()
    pdf = await (await client.get(document["pdf_url"], headers=patient.auth)).read()
    assert hashlib.sha256(pdf).hexdigest() == document["sha256"]
    return document["id"], pdf


async def upload(client: TestClient, patient: Account, document_id: str, signature: bytes,
                 content_type: str = "application/pkcs7-signature") -> Any:
    return await client.post(f"/api/v1/consent-documents/{document_id}/signature",
                             headers={**patient.auth, "Content-Type": content_type}, data=io.BytesIO(signature))


async def refusal(response: Any) -> str:
    assert response.status == 422, await response.text()
    problem = await response.json()
    assert problem["errors"][0]["field"] == "signature"
    return str(problem["code"])


async def test_a_valid_signature_signs_and_verifies(clinic: TestClient, certificates: Certificates,
                                                    pki: Pki, tmp_path: Path) -> None:
    patient = await register_patient(clinic, email=EMAIL)
    document_id, pdf = await document_for(clinic, patient)
    signature = sign_document(pdf, certificates.valid, tmp_path / "sig", chain=pki.intermediate)
    response = await upload(clinic, patient, document_id, signature)
    assert response.status == 201, await response.text()
    consent = await response.json()
    assert consent["level"] == "enhanced_unqualified"
    evidence = consent["evidence"]
    assert evidence["method"] == "cms_detached"
    assert evidence["qualified"] is False
    assert evidence["certificate_sha256"] == hashlib.sha256(certificates.valid.der).hexdigest()
    assert evidence["signature_sha256"] == hashlib.sha256(signature).hexdigest()
    stored = await clinic.get(f"/api/v1/consents/{consent['id']}/signature", headers=patient.auth)
    assert await stored.read() == signature
    verified = await (await clinic.get(f"/api/v1/consents/{consent['id']}/verification",
                                       headers=patient.auth)).json()
    assert verified["ok"], verified
    assert "enhanced signature by" in next(c for c in verified["checks"] if c["name"] == "signature")["detail"]


async def test_a_qualified_certificate_in_pem_form_is_recorded_as_qualified(
        clinic: TestClient, certificates: Certificates, pki: Pki, tmp_path: Path) -> None:
    patient = await register_patient(clinic, email=EMAIL)
    document_id, pdf = await document_for(clinic, patient)
    signature = sign_document(pdf, certificates.qualified, tmp_path / "sig", chain=pki.intermediate, der=False)
    response = await upload(clinic, patient, document_id, signature, "application/x-pem-file")
    assert response.status == 201, await response.text()
    assert (await response.json())["level"] == "enhanced_qualified"


async def test_a_signature_over_a_document_one_byte_different_is_refused(
        clinic: TestClient, certificates: Certificates, pki: Pki, tmp_path: Path) -> None:
    patient = await register_patient(clinic, email=EMAIL)
    document_id, pdf = await document_for(clinic, patient)
    changed = bytearray(pdf)
    changed[len(changed) // 2] ^= 0x01
    signature = sign_document(bytes(changed), certificates.valid, tmp_path / "sig", chain=pki.intermediate)
    assert await refusal(await upload(clinic, patient, document_id, signature)) == "digest_mismatch"


@pytest.mark.parametrize(("which", "code"), [
    ("expired", "expired"), ("not_yet_valid", "not_yet_valid"), ("encipherment", "key_usage"),
    ("revoked", "revoked"), ("other_patient", "subject_mismatch"), ("foreign", "untrusted"),
])
async def test_each_bad_certificate_is_refused_with_its_reason(
        clinic: TestClient, certificates: Certificates, pki: Pki, tmp_path: Path, which: str, code: str) -> None:
    patient = await register_patient(clinic, email=EMAIL)
    document_id, pdf = await document_for(clinic, patient)
    signer: Issued = getattr(certificates, which)
    chain = None if which == "foreign" else pki.intermediate
    signature = sign_document(pdf, signer, tmp_path / "sig", chain=chain)
    assert await refusal(await upload(clinic, patient, document_id, signature)) == code
    status = await (await clinic.get("/api/v1/me/consents", headers=patient.auth)).json()
    assert status["consents"] == []  # nothing was signed


async def test_garbage_empty_and_huge_uploads_are_clear_problems(clinic: TestClient) -> None:
    patient = await register_patient(clinic, email=EMAIL)
    document_id, _ = await document_for(clinic, patient)
    assert await refusal(await upload(clinic, patient, document_id, b"\x30\x82garbage" * 20)) == "malformed"
    assert await refusal(await upload(clinic, patient, document_id, b"-----BEGIN PKCS7-----\n!!\n-----END PKCS7-----\n",
                                      "application/x-pem-file")) == "malformed"
    empty = await upload(clinic, patient, document_id, b"")
    assert empty.status == 400
    assert (await empty.json())["code"] == "empty"
    huge = await upload(clinic, patient, document_id, b"\x30" * (300 * 1024))
    assert huge.status == 413
    assert (await huge.json())["code"] == "too_large"
    wrong_type = await upload(clinic, patient, document_id, b"\x30\x00", "application/json")
    assert wrong_type.status == 415


async def test_snils_matching(aiohttp_client: Any, tmp_path: Path, database_url: str, pki: Pki,
                             certificates: Certificates) -> None:
    settings = make_settings(tmp_path, database_url,
                             **trust_settings(pki, certificates, tmp_path, consent_subject_match="snils"))
    client: TestClient = await aiohttp_client(create_app(settings))
    await seed_templates(client)
    registered = await client.post("/api/v1/auth/register", json={
        "email": "snils.patient@example.org", "password": PASSWORD, "full_name": "Пациент со СНИЛС",
        "birth_date": "1960-01-01", "phone": "+79160001122", "locale": "ru", "snils": "112-233-445 95"})
    assert registered.status == 201, await registered.text()
    body = await registered.json()
    patient = await login(client, Account("snils.patient@example.org", PASSWORD, body["user"]["id"], "patient",
                                          patient_id=body["patient"]["id"]))
    document_id, pdf = await document_for(client, patient)
    mismatch = sign_document(pdf, certificates.valid, tmp_path / "no-snils", chain=pki.intermediate)
    assert await refusal(await upload(client, patient, document_id, mismatch)) == "subject_mismatch"
    signature = sign_document(pdf, certificates.with_snils, tmp_path / "snils", chain=pki.intermediate)
    assert (await upload(client, patient, document_id, signature)).status == 201
    bad = await client.post("/api/v1/auth/register", json={
        "email": "bad.snils@example.org", "password": PASSWORD, "full_name": "X", "birth_date": "1960-01-01",
        "phone": "+79160001122", "snils": "11223344596"})
    assert bad.status == 422
    assert (await bad.json())["errors"][0]["field"] == "snils"


async def test_without_trust_anchors_enhanced_signatures_are_not_offered(client: TestClient) -> None:
    await seed_templates(client)
    patient = await register_patient(client)
    document_id, _ = await document_for(client, patient)
    response = await upload(client, patient, document_id, b"\x30\x03\x02\x01\x01")
    assert response.status == 409
    assert (await response.json())["code"] == "enhanced_not_configured"
