"""Turning a draft into a signed version: the PDF prepared from one draft revision, then the physician's
signature over exactly those bytes.

Two levels. `enhanced_*`: the physician's own detached CMS signature over the PDF, verified like a
patient's consent signature (consent/signatures.py, the clinic's trusted CAs). `server_session`: the clinic's
seal over a canonical record binding the PDF's hash to the physician's signed-in session and token. Either
way the clinic seals the stored record, so a changed field or a swapped PDF is found by `verification`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import seal
from consent.problems import EnhancedNotConfigured
from consent.rules import canonical_json, sha256_hex, timestamp
from consent.setup import ConsentSetup
from consent.signatures import SignatureRejected, Signer, VerifiedSignature
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import User
from server.http.problems import NotFound
from server.people.models import Patient, Physician
from server.records import rules
from server.records.content import loaded
from server.records.models import Protocol, ProtocolDocument, ProtocolSignatureLevel, ProtocolVersion
from server.records.pdf import ProtocolDocumentInput, render_protocol_pdf
from server.records.problems import (
    ConsultationNotCompleted,
    DocumentOutdated,
    NoDraft,
    ProtocolIncomplete,
    SignatureRefused,
)
from server.records.services import consultation_for_author, protocol_of
from server.scheduling import rules as scheduling_rules
from server.scheduling.models import ConditionVersion, Consultation, ConsultationStatus
from server.scheduling.problems import IllegalStatusChange
from server.scheduling.services import Viewer

PAYLOAD_KIND = "telemed.protocol.v1"


@dataclass(frozen=True)
class SessionBinding:
    """The signed-in session that asks for a signature: what a `server_session` signature attests."""

    session_id: uuid.UUID
    token_id: str | None  # the access token's jti; None where the page renewed the token in this request
    ip_hash: str | None


async def prepare(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, language: str,
                  setup: ConsentSetup, ctx: AuditContext, now: dt.datetime) -> ProtocolDocument:
    """The PDF of the current draft revision, rendered once per revision and language (a second request
    returns the same document, so an external signer and the server agree on the bytes)."""
    consultation = await consultation_for_author(session, consultation_id, viewer)
    protocol = await protocol_of(session, consultation.id, for_change=True)
    if protocol is None or protocol.draft is None:
        raise NoDraft()
    content = rules.normalised(loaded(protocol.draft))
    problems = rules.signing_problems(protocol.kind, content)
    if problems:
        raise ProtocolIncomplete(problems)
    existing = (await session.scalars(select(ProtocolDocument).where(
        ProtocolDocument.protocol_id == protocol.id, ProtocolDocument.revision == protocol.revision,
        ProtocolDocument.language == language))).first()
    if existing is not None:
        return existing
    document_id = uuid.uuid4()
    data = await _document_input(session, consultation, protocol, document_id=document_id, language=language,
                                 setup=setup)
    pdf = await asyncio.to_thread(_render, data, setup)
    document = ProtocolDocument(id=document_id, protocol_id=protocol.id, revision=protocol.revision,
                                version=data.version, content=content.model_dump(mode="json"),
                                amendment_reason=protocol.draft_reason, language=language, pdf=pdf,
                                sha256=sha256_hex(pdf), created_at=now, created_by_user_id=viewer.user_id)
    session.add(document)
    await session.flush()
    await audit.record(session, ctx=ctx, action="protocol.prepared", object_type="protocol_document",
                       object_id=document.id, subject_patient_id=protocol.patient_id,
                       detail={"version": document.version, "revision": document.revision}, now=now)
    return document


def _render(data: ProtocolDocumentInput, setup: ConsentSetup) -> bytes:
    if setup.font is None:
        return render_protocol_pdf(data)
    return render_protocol_pdf(data, font_path=setup.font, bold_font_path=setup.font)


async def _document_input(session: AsyncSession, consultation: Consultation, protocol: Protocol, *,
                          document_id: uuid.UUID, language: str, setup: ConsentSetup) -> ProtocolDocumentInput:
    patient, patient_user = (await session.execute(select(Patient, User).join(User, User.id == Patient.user_id)
                                                   .where(Patient.id == consultation.patient_id))).one()
    physician, physician_user = (await session.execute(
        select(Physician, User).join(User, User.id == Physician.user_id)
        .where(Physician.id == consultation.physician_id))).one()
    condition = await session.get(ConditionVersion, consultation.condition_id)
    assert protocol.draft is not None  # noqa: S101  # checked by the caller
    return ProtocolDocumentInput(
        document_id=document_id, clinic_name=setup.clinic_name, language=language,
        version=protocol.signed_versions + 1, amendment_reason=protocol.draft_reason, kind=protocol.kind.value,
        starts_at=consultation.starts_at.astimezone(setup.zone),
        condition=condition.name(language) if condition else "", patient_name=patient_user.full_name,
        birth_date=patient.birth_date, physician_name=physician_user.full_name,
        physician_specialty=physician.specialty, physician_licence=physician.licence_number,
        content=rules.normalised(loaded(protocol.draft)))


async def sign(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, document_id: uuid.UUID,
               signature: bytes | None, binding: SessionBinding, setup: ConsentSetup, ctx: AuditContext,
               now: dt.datetime) -> ProtocolVersion:
    """Sign the prepared PDF; the first signature makes a completed consultation `documented`."""
    consultation = await consultation_for_author(session, consultation_id, viewer)
    if not rules.may_sign(consultation.status):
        raise ConsultationNotCompleted()
    protocol = await protocol_of(session, consultation.id, for_change=True)
    if protocol is None or protocol.draft is None:
        raise NoDraft()
    document = await session.get(ProtocolDocument, document_id)
    if document is None or document.protocol_id != protocol.id:
        raise NotFound()
    if document.revision != protocol.revision:
        raise DocumentOutdated()
    version = ProtocolVersion(
        id=uuid.uuid4(), protocol_id=protocol.id, consultation_id=consultation.id, patient_id=protocol.patient_id,
        physician_id=protocol.physician_id, version=document.version, document_id=document.id,
        content_sha256=sha256_hex(canonical_json(document.content)), amendment_reason=document.amendment_reason,
        language=document.language, pdf_sha256=document.sha256, pdf_size=len(document.pdf), signed_at=now,
        signed_by_user_id=viewer.user_id, sealed_payload="", seal="", seal_key_id="")
    if signature is None:
        version.level = ProtocolSignatureLevel.server_session
        version.evidence = _session_evidence(version, binding)
    else:
        verified, email = await _verify_enhanced(session, document, signature, viewer=viewer, setup=setup, now=now)
        version.level = (ProtocolSignatureLevel.enhanced_qualified if verified.qualified
                         else ProtocolSignatureLevel.enhanced_unqualified)
        version.evidence = {**_enhanced_evidence(version, verified, binding, now), "signer_email": email}
        version.signature_cms = verified.signature_der
    version.evidence_sha256 = sha256_hex(canonical_json(version.evidence))
    sealed = seal.seal(setup.seal_keys, sealed_payload(version))
    version.sealed_payload, version.seal, version.seal_key_id = sealed.payload, sealed.signature, sealed.key_id
    session.add(version)
    protocol.draft, protocol.draft_reason, protocol.draft_updated_at = None, None, now
    protocol.signed_versions, protocol.revision = version.version, protocol.revision + 1
    await session.flush()
    await audit.record(session, ctx=ctx, action="protocol.signed", object_type="protocol_version",
                       object_id=version.id, subject_patient_id=version.patient_id,
                       detail={"version": version.version, "level": version.level.value}, now=now)
    if consultation.status is ConsultationStatus.completed:
        await _document(session, consultation, ctx=ctx, now=now)
    return version


async def _document(session: AsyncSession, consultation: Consultation, *, ctx: AuditContext,
                    now: dt.datetime) -> None:
    """completed -> documented, by the scheduling state machine, with its audit entry."""
    try:
        consultation.status = scheduling_rules.transition(consultation.status, ConsultationStatus.documented)
    except scheduling_rules.IllegalTransition as exc:
        raise IllegalStatusChange(str(exc)) from None
    await audit.record(session, ctx=ctx, action="consultation.documented", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id, now=now)


async def _verify_enhanced(session: AsyncSession, document: ProtocolDocument, signature: bytes, *, viewer: Viewer,
                           setup: ConsentSetup, now: dt.datetime) -> tuple[VerifiedSignature, str]:
    """The physician's CMS signature checked against the clinic's trusted CAs and their own e-mail."""
    if setup.verifier is None:
        raise EnhancedNotConfigured()
    user = await session.get(User, viewer.user_id)
    if user is None:
        raise NotFound()
    try:
        verified = await setup.verifier.verify(document=document.pdf, signature=signature,
                                               signer=Signer(email=user.email), at=now)
    except SignatureRejected as rejected:
        raise SignatureRefused(rejected.code, rejected.message) from None
    return verified, user.email


def _common_evidence(version: ProtocolVersion, binding: SessionBinding) -> dict[str, Any]:
    return {"pdf_sha256": version.pdf_sha256, "protocol_id": str(version.protocol_id), "version": version.version,
            "physician_id": str(version.physician_id), "user_id": str(version.signed_by_user_id),
            "session_id": str(binding.session_id), "token_id": binding.token_id, "ip_hash": binding.ip_hash,
            "signed_at": timestamp(version.signed_at)}


def _session_evidence(version: ProtocolVersion, binding: SessionBinding) -> dict[str, Any]:
    return {"method": "server_session", **_common_evidence(version, binding)}


def _enhanced_evidence(version: ProtocolVersion, verified: VerifiedSignature, binding: SessionBinding,
                       now: dt.datetime) -> dict[str, Any]:
    return {"method": "cms_detached", **_common_evidence(version, binding),
            "signature_sha256": sha256_hex(verified.signature_der), "subject": verified.subject,
            "issuer": verified.issuer, "serial_number": verified.serial_number,
            "certificate_sha256": verified.certificate_sha256, "qualified": verified.qualified,
            "not_before": timestamp(verified.not_before), "not_after": timestamp(verified.not_after),
            "digest_algorithm": verified.digest_algorithm, "signature_algorithm": verified.signature_algorithm,
            "verified_at": timestamp(now)}


def sealed_fields(version: ProtocolVersion) -> dict[str, Any]:
    """The stored values of the sealed columns, in the payload's textual form."""
    return {"protocol_id": str(version.protocol_id), "consultation_id": str(version.consultation_id),
            "patient_id": str(version.patient_id), "physician_id": str(version.physician_id),
            "version": version.version, "document_id": str(version.document_id), "pdf_sha256": version.pdf_sha256,
            "pdf_size": version.pdf_size, "content_sha256": version.content_sha256, "level": version.level.value,
            "evidence_sha256": version.evidence_sha256, "signed_at": timestamp(version.signed_at)}


def sealed_payload(version: ProtocolVersion) -> dict[str, Any]:
    """What the clinic's key signs: the sealed columns and the whole evidence (for a session signature, the
    binding of the PDF's hash to the physician's session, token and time)."""
    return {"kind": PAYLOAD_KIND, **sealed_fields(version), "evidence": version.evidence}
