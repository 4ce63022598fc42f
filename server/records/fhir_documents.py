"""FHIR DocumentReference for the medical record's documents: each signed protocol version (its PDF) and each
finalised call recording (one attachment per participant's WebM), with hash and size.

Ids: `protocol-<version id>` and `recording-<recording id>`. An amended protocol's earlier versions are
`superseded`; a damaged or partial recording says so in its description and `docStatus` stays `final` (it is
what exists, verified); erased recordings (retention over) are no longer listed. Attachment.hash is FHIR's
base64 SHA-1 of the bytes served; the SHA-256 (of the bytes served, and of the sealed file for recordings) goes
in an extension, as the clinic's manifests and signatures use it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.resource import Resource
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from media.recording.models import FINAL_STATES, Recording, RecordingOutput
from server.records import fhir
from server.records.models import ProtocolDocument, ProtocolVersion
from server.records.services import SignedVersion, signed_versions
from server.scheduling.models import Consultation

LOINC = "http://loinc.org"
PROTOCOL_TYPE = {"system": LOINC, "code": "11488-4", "display": "Consult note"}
RECORDING_TYPE = {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}  # closest LOINC
PROTOCOL_PREFIX, RECORDING_PREFIX = "protocol-", "recording-"


def _sha256_extension(clinic: fhir.Clinic, value: str, what: str) -> dict[str, Any]:
    return {"url": f"{clinic.base_url.rstrip('/')}/fhir/StructureDefinition/{what}", "valueString": value}


def protocol_document(version: SignedVersion, consultation: Consultation, pdf: bytes, *, latest: bool,
                      clinic: fhir.Clinic) -> DocumentReference:
    """A signed protocol version: the canonical PDF the physician signed (or its server-session signature)."""
    data: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": f"{PROTOCOL_PREFIX}{version.id}",
        "identifier": [{"use": "official", "system": clinic.system("protocol-version"), "value": str(version.id)}],
        "status": "current" if latest else "superseded",
        "docStatus": "final" if version.version == 1 else "amended",
        "type": {"coding": [PROTOCOL_TYPE], "text": "Teleconsultation protocol"},
        "subject": {"reference": f"Patient/{consultation.patient_id}"},
        "date": version.signed_at.isoformat(),
        "author": [{"reference": f"Practitioner/{consultation.physician_id}"}],
        "authenticator": {"reference": f"Practitioner/{consultation.physician_id}"},
        "description": f"Protocol version {version.version}, signature: {version.level}"
                       + (f"; amendment: {version.amendment_reason}" if version.amendment_reason else ""),
        "content": [{"attachment": {
            "contentType": "application/pdf", "language": version.language, "size": version.pdf_size,
            "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode(),  # noqa: S324  # FHIR defines it so
            "url": f"{clinic.base_url.rstrip('/')}/api/v1/consultations/{consultation.id}/protocol/versions/"
                   f"{version.id}/pdf",
            "title": f"protocol-v{version.version}.pdf", "creation": version.signed_at.isoformat(),
            "extension": [_sha256_extension(clinic, version.pdf_sha256, "sha256")]}}],
        "context": {"encounter": [{"reference": f"Encounter/{consultation.id}"}]},
    }
    return DocumentReference.model_validate(data)


def recording_document(recording: Recording, outputs: list[RecordingOutput], consultation: Consultation, *,
                       clinic: fhir.Clinic) -> DocumentReference:
    """A finalised recording: each participant's WebM as one attachment (the playback API serves it)."""
    base = clinic.base_url.rstrip("/")
    description = f"Video recording of the teleconsultation ({recording.state.value})"
    if recording.problems:
        description += ": " + "; ".join(recording.problems[:5])
    data: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": f"{RECORDING_PREFIX}{recording.id}",
        "identifier": [{"use": "official", "system": clinic.system("recording"), "value": str(recording.id)}],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [RECORDING_TYPE], "text": "Teleconsultation video recording"},
        "subject": {"reference": f"Patient/{consultation.patient_id}"},
        "date": (recording.finalised_at or recording.started_at).isoformat(),
        "author": [{"reference": f"Practitioner/{consultation.physician_id}"}],
        "description": description,
        "content": [{"attachment": {
            "contentType": "video/webm", "size": output.plaintext_size, "hash": output.media_sha1,
            "url": f"{base}/api/v1/recordings/{recording.id}/media?participant={output.participant}",
            "title": f"{output.participant}.webm", "creation": recording.started_at.isoformat(),
            "extension": [_sha256_extension(clinic, output.media_sha256, "sha256"),
                          _sha256_extension(clinic, output.sha256, "sealed-sha256")]}}
            for output in outputs],
        "context": {"encounter": [{"reference": f"Encounter/{consultation.id}"}],
                    "period": {"start": recording.started_at.isoformat(),
                               **({"end": recording.stopped_at.isoformat()} if recording.stopped_at else {})}},
    }
    return DocumentReference.model_validate(data)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def _protocol_found(session: AsyncSession, ctx: fhir.Context, version_id: uuid.UUID) -> fhir.Found | None:
    version = await session.get(ProtocolVersion, version_id)
    if version is None:
        return None
    consultation = await session.get(Consultation, version.consultation_id)
    if consultation is None:
        return None
    versions = await signed_versions(session, consultation_id=consultation.id)
    signed = next(v for v in versions if v.id == version.id)
    document = await session.get(ProtocolDocument, version.document_id)
    pdf = document.pdf if document is not None else b""
    return fhir.Found(consultation.patient_id, lambda: protocol_document(
        signed, consultation, pdf, latest=signed.version == versions[-1].version, clinic=ctx.clinic))


async def _recording_found(session: AsyncSession, ctx: fhir.Context, recording_id: uuid.UUID) -> fhir.Found | None:
    recording = await session.get(Recording, recording_id)
    if recording is None or recording.state not in FINAL_STATES:
        return None
    consultation = await session.get(Consultation, recording.consultation_id)
    if consultation is None:
        return None
    outputs = list((await session.scalars(select(RecordingOutput).where(RecordingOutput.recording_id == recording.id)
                                          .order_by(RecordingOutput.participant))).all())
    return fhir.Found(consultation.patient_id, lambda: recording_document(recording, outputs, consultation,
                                                                          clinic=ctx.clinic))


async def read_document_reference(session: AsyncSession, ctx: fhir.Context, resource_id: str) -> fhir.Found | None:
    for prefix, load in ((PROTOCOL_PREFIX, _protocol_found), (RECORDING_PREFIX, _recording_found)):
        if resource_id.startswith(prefix) and (found_id := _uuid(resource_id.removeprefix(prefix))) is not None:
            return await load(session, ctx, found_id)
    return None


async def search_document_references(session: AsyncSession, ctx: fhir.Context, patient_id: uuid.UUID
                                     ) -> list[Resource]:
    """The patient's signed protocol versions and finalised recordings, consultation by consultation."""
    found: list[Resource] = []
    consultations = (await session.scalars(select(Consultation).where(Consultation.patient_id == patient_id)
                                           .order_by(Consultation.starts_at, Consultation.id))).all()
    for consultation in consultations:
        versions = await signed_versions(session, consultation_id=consultation.id)
        for version in versions:
            row = await session.get(ProtocolVersion, version.id)
            document = await session.get(ProtocolDocument, row.document_id) if row is not None else None
            found.append(protocol_document(version, consultation, document.pdf if document else b"",
                                           latest=version.version == versions[-1].version, clinic=ctx.clinic))
        recordings = (await session.scalars(select(Recording).where(
            Recording.consultation_id == consultation.id, Recording.state.in_(list(FINAL_STATES)))
            .order_by(Recording.started_at))).all()
        for recording in recordings:
            outputs = list((await session.scalars(select(RecordingOutput).where(
                RecordingOutput.recording_id == recording.id).order_by(RecordingOutput.participant))).all())
            found.append(recording_document(recording, outputs, consultation, clinic=ctx.clinic))
    return found
