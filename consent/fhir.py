"""A signed consent as a FHIR R4 `Consent` resource, for exchange with other systems (the R4B model is R4's).

The signed PDF travels inside the resource with two hashes: R4 defines `Attachment.hash` as SHA-1, which
proves nothing against a forger, so the SHA-256 that the patient actually signed rides in an extension.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.consent import Consent

from consent.texts import PURPOSES

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
PURPOSE_SYSTEM = "urn:telemed:consent-purpose"
SHA256_EXTENSION = "urn:telemed:fhir:sha256"
TEMPLATE_SHA256_EXTENSION = "urn:telemed:fhir:template-sha256"
SIGNATURE_LEVEL_EXTENSION = "urn:telemed:fhir:signature-level"

# Telemedicine care and recording are consents to how care is given; personal data is a privacy consent.
_SCOPE = {
    "telemedicine_care": ("treatment", "Treatment"),
    "recording": ("treatment", "Treatment"),
    "personal_data": ("patient-privacy", "Privacy Consent"),
}
# Our statuses are already R4 Consent.status codes; the table says which ones an export may carry.
STATUSES = ("active", "inactive", "rejected")
SIGNATURE_LEVELS = ("simple", "enhanced_unqualified", "enhanced_qualified", "in_person")


@dataclass(frozen=True)
class ConsentFhirInput:
    """One signed consent, as stored, with the PDF the patient signed."""

    consent_id: uuid.UUID
    patient_id: uuid.UUID
    purpose: str
    status: str  # "active" | "inactive" | "rejected"
    signed_at: dt.datetime  # aware
    withdrawn_at: dt.datetime | None
    language: str
    template_version: int
    template_sha256: str
    document_sha256: str
    pdf: bytes
    signature_level: str  # one of SIGNATURE_LEVELS
    clinic_name: str
    base_url: str  # the public URL the PDF is downloaded from


def _check(data: ConsentFhirInput) -> None:
    if data.purpose not in PURPOSES:
        raise ValueError(f"unknown consent purpose {data.purpose!r}")
    if data.status not in STATUSES:
        raise ValueError(f"consent status {data.status!r} is not one of {', '.join(STATUSES)}")
    if data.signature_level not in SIGNATURE_LEVELS:
        raise ValueError(f"unknown signature level {data.signature_level!r}")
    for name, moment in (("signed_at", data.signed_at), ("withdrawn_at", data.withdrawn_at)):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware")
    if data.withdrawn_at is not None and data.status == "active":
        raise ValueError("a withdrawn consent cannot be exported as active")
    # Exporting a hash that does not match the attached bytes would mislead whoever checks the signature.
    if hashlib.sha256(data.pdf).hexdigest() != data.document_sha256.lower():
        raise ValueError("document_sha256 does not match the PDF")


def consent_resource(data: ConsentFhirInput) -> dict[str, Any]:
    """The consent as a validated FHIR R4 Consent in JSON form, with the signed PDF attached."""
    _check(data)
    scope_code, scope_display = _SCOPE[data.purpose]
    period: dict[str, Any] = {"start": data.signed_at.isoformat()}
    if data.withdrawn_at is not None:
        period["end"] = data.withdrawn_at.isoformat()
    resource = Consent.model_validate({
        "resourceType": "Consent",
        "id": str(data.consent_id),
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": data.consent_id.urn}],
        "extension": [{"url": SIGNATURE_LEVEL_EXTENSION, "valueCode": data.signature_level}],
        "status": data.status,
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": scope_code, "display": scope_display}]},
        "category": [
            {"coding": [{"system": LOINC, "code": "59284-0", "display": "Consent Document"}]},
            {"coding": [{"system": PURPOSE_SYSTEM, "code": data.purpose}]},
        ],
        "patient": {"reference": f"Patient/{data.patient_id}"},
        "dateTime": data.signed_at.isoformat(),
        "organization": [{"display": data.clinic_name}],
        "policy": [{
            "uri": f"urn:telemed:consent-template:{data.purpose}:{data.template_version}",
            "extension": [{"url": TEMPLATE_SHA256_EXTENSION, "valueString": data.template_sha256.lower()}],
        }],
        "sourceAttachment": {
            "extension": [{"url": SHA256_EXTENSION, "valueString": data.document_sha256.lower()}],
            "contentType": "application/pdf",
            "language": data.language,
            "data": base64.b64encode(data.pdf).decode("ascii"),
            "url": f"{data.base_url.rstrip('/')}/api/v1/consents/{data.consent_id}/pdf",
            "size": len(data.pdf),
            "hash": base64.b64encode(hashlib.sha1(data.pdf, usedforsecurity=False).digest()).decode("ascii"),
        },
        "provision": {"type": "permit", "period": period},
    })
    return resource.model_dump(mode="json", exclude_none=True)
