"""The FHIR R4 Consent export: it validates, round-trips, and carries the signed PDF with hashes that match it."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Any

import pytest
from fhir.resources.R4B.consent import Consent

from consent.fhir import (
    SHA256_EXTENSION,
    SIGNATURE_LEVEL_EXTENSION,
    SIGNATURE_LEVELS,
    TEMPLATE_SHA256_EXTENSION,
    ConsentFhirInput,
    consent_resource,
)

PDF = b"%PDF-1.4\n% not a real document, but bytes are bytes\n" + bytes(range(256)) * 20
CONSENT_ID = uuid.UUID("0b6f3d1c-52a4-4d7e-8f0e-2c9d8a7b6e51")
PATIENT_ID = uuid.UUID("9a1e7c3b-4f5d-4b6a-8c2d-1e0f9a8b7c6d")
SIGNED_AT = dt.datetime(2026, 11, 22, 7, 30, tzinfo=dt.UTC)


def make_input(**changes: Any) -> ConsentFhirInput:
    data = ConsentFhirInput(
        consent_id=CONSENT_ID,
        patient_id=PATIENT_ID,
        purpose="telemedicine_care",
        status="active",
        signed_at=SIGNED_AT,
        withdrawn_at=None,
        language="ru",
        template_version=3,
        template_sha256="AB" * 32,
        document_sha256=hashlib.sha256(PDF).hexdigest(),
        pdf=PDF,
        signature_level="simple",
        clinic_name="Клиника «Здоровье»",
        base_url="https://clinic.example/",
    )
    return dataclasses.replace(data, **changes)


def extension(element: dict[str, Any], url: str) -> dict[str, Any]:
    (found,) = [item for item in element["extension"] if item["url"] == url]
    return found


def test_consent_resource_validates_and_round_trips() -> None:
    resource = consent_resource(make_input())
    assert resource["resourceType"] == "Consent"
    assert resource["id"] == str(CONSENT_ID)
    assert Consent.model_validate(resource).model_dump(mode="json", exclude_none=True) == resource


@pytest.mark.parametrize("status", ["active", "inactive", "rejected"])
def test_consent_resource_keeps_the_status(status: str) -> None:
    assert consent_resource(make_input(status=status))["status"] == status


@pytest.mark.parametrize("status", ["draft", "withdrawn", "entered-in-error", ""])
def test_consent_resource_rejects_other_statuses(status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        consent_resource(make_input(status=status))


@pytest.mark.parametrize(
    ("purpose", "scope"),
    [("telemedicine_care", "treatment"), ("recording", "treatment"), ("personal_data", "patient-privacy")],
)
def test_consent_resource_scope_and_category_follow_the_purpose(purpose: str, scope: str) -> None:
    resource = consent_resource(make_input(purpose=purpose))
    assert resource["scope"]["coding"] == [{
        "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope,
        "display": "Treatment" if scope == "treatment" else "Privacy Consent",
    }]
    codings = [coding for category in resource["category"] for coding in category["coding"]]
    assert {"system": "http://loinc.org", "code": "59284-0", "display": "Consent Document"} in codings
    assert {"system": "urn:telemed:consent-purpose", "code": purpose} in codings
    assert resource["policy"][0]["uri"] == f"urn:telemed:consent-template:{purpose}:3"


def test_consent_resource_names_patient_clinic_template_and_time() -> None:
    resource = consent_resource(make_input())
    assert resource["patient"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert resource["organization"] == [{"display": "Клиника «Здоровье»"}]
    assert dt.datetime.fromisoformat(resource["dateTime"]) == SIGNED_AT
    assert extension(resource["policy"][0], TEMPLATE_SHA256_EXTENSION)["valueString"] == "ab" * 32
    assert resource["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{CONSENT_ID}"}]


def test_consent_resource_attaches_the_pdf_with_matching_hashes() -> None:
    attachment = consent_resource(make_input())["sourceAttachment"]
    assert attachment["contentType"] == "application/pdf"
    assert attachment["language"] == "ru"
    assert base64.b64decode(attachment["data"]) == PDF
    assert attachment["size"] == len(PDF)
    assert attachment["url"] == f"https://clinic.example/api/v1/consents/{CONSENT_ID}/pdf"
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(PDF, usedforsecurity=False).digest()).decode()
    assert extension(attachment, SHA256_EXTENSION)["valueString"] == hashlib.sha256(PDF).hexdigest()


@pytest.mark.parametrize("level", SIGNATURE_LEVELS)
def test_consent_resource_records_the_signature_level(level: str) -> None:
    resource = consent_resource(make_input(signature_level=level))
    assert extension(resource, SIGNATURE_LEVEL_EXTENSION) == {"url": SIGNATURE_LEVEL_EXTENSION, "valueCode": level}


def test_consent_resource_withdrawn_ends_the_provision() -> None:
    withdrawn_at = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    resource = consent_resource(make_input(status="inactive", withdrawn_at=withdrawn_at))
    period = resource["provision"]["period"]
    assert dt.datetime.fromisoformat(period["start"]) == SIGNED_AT
    assert dt.datetime.fromisoformat(period["end"]) == withdrawn_at
    provision = Consent.model_validate(resource).provision
    assert provision is not None
    assert provision.period is not None
    assert provision.period.end == withdrawn_at


def test_consent_resource_active_has_an_open_provision() -> None:
    assert "end" not in consent_resource(make_input())["provision"]["period"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"document_sha256": hashlib.sha256(b"another document").hexdigest()}, "does not match the PDF"),
        ({"signed_at": dt.datetime(2026, 11, 22, 7, 30)}, "timezone-aware"),  # noqa: DTZ001 -- the naive case under test
        ({"withdrawn_at": SIGNED_AT + dt.timedelta(days=1)}, "withdrawn consent cannot be exported as active"),
        ({"signature_level": "handwritten"}, "signature level"),
        ({"purpose": "marketing"}, "purpose"),
    ],
)
def test_consent_resource_rejects_inconsistent_input(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        consent_resource(make_input(**change))
