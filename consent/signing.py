"""Signing a consent document: the PDF a patient reads, and the three ways to sign exactly those bytes.

Each way ends in `_record`: the consent row with its evidence, sealed by the clinic's key, and an audit
entry, in the caller's transaction. Refusals that must be remembered (a wrong code counts as an attempt)
are returned, not raised, so the caller commits the count before answering.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import rules, seal, templates
from consent.models import (
    Consent,
    ConsentDocument,
    ConsentOtp,
    ConsentPurpose,
    ConsentTemplate,
    OtpChannel,
    SignatureLevel,
)
from consent.pdf import ConsentDocumentInput, render_consent_pdf
from consent.problems import (
    AlreadySigned,
    CodeRefused,
    DocumentOutdated,
    EnhancedNotConfigured,
    NoDestination,
    SignatureRefused,
    TooManyCodes,
)
from consent.setup import ConsentSetup
from consent.signatures import SignatureRejected, Signer
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role, User
from server.http.problems import NotFound
from server.people.models import Patient, Physician
from server.scheduling.models import Consultation, ConsultationStatus

USER_AGENT_MAX = 300


@dataclass(frozen=True)
class Actor:
    """Who acts: the patient themself, or staff (admins; physicians for their own patients)."""

    user_id: uuid.UUID
    role: Role
    patient_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Client:
    """Where a signing came from, kept as evidence: a keyed hash of the address, and the browser."""

    ip_hash: str | None
    user_agent: str | None


async def _patient_user(session: AsyncSession, patient_id: uuid.UUID) -> tuple[Patient, User]:
    row = (await session.execute(select(Patient, User).join(User, User.id == Patient.user_id)
                                 .where(Patient.id == patient_id))).one_or_none()
    if row is None:
        raise NotFound()
    return row[0], row[1]


async def prepare(session: AsyncSession, *, patient_id: uuid.UUID, purpose: ConsentPurpose, language: str,
                  actor: Actor, ctx: AuditContext, setup: ConsentSetup, now: dt.datetime) -> ConsentDocument:
    """The PDF of the current version for this patient, today. An unsigned one made today is reused, so
    reloading the page does not pile up documents."""
    template = await templates.current(session, purpose)
    local = now.astimezone(setup.zone)
    today_began = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)
    existing = (await session.scalars(select(ConsentDocument).outerjoin(
        Consent, Consent.document_id == ConsentDocument.id).where(
        ConsentDocument.patient_id == patient_id, ConsentDocument.template_id == template.id,
        ConsentDocument.language == language, Consent.id.is_(None),
        ConsentDocument.created_at >= today_began)
        .order_by(ConsentDocument.created_at.desc()).limit(1))).one_or_none()
    if existing is not None:
        await audit_document_read(session, existing, actor=actor, ctx=ctx, what="prepared", now=now)
        return existing
    patient, user = await _patient_user(session, patient_id)
    document_id = uuid.uuid4()
    pdf = await asyncio.to_thread(_render, template, document_id=document_id, language=language,
                                  patient_name=user.full_name, birth_date=patient.birth_date, setup=setup, now=now)
    document = ConsentDocument(id=document_id, patient_id=patient_id, template_id=template.id, language=language,
                               pdf=pdf, sha256=rules.sha256_hex(pdf), created_at=now, created_by_user_id=actor.user_id)
    session.add(document)
    await session.flush()
    await audit_document_read(session, document, actor=actor, ctx=ctx, what="prepared", now=now)
    return document


async def audit_document_read(session: AsyncSession, document: ConsentDocument, *, actor: Actor, ctx: AuditContext,
                              what: str, now: dt.datetime) -> None:
    """Staff making or reading a patient's document (it carries name and birth date) is in their access log."""
    if actor.role is not Role.patient:
        await audit.record(session, ctx=ctx, action=f"consent_document.{what}", object_type="consent_document",
                           object_id=document.id, subject_patient_id=document.patient_id, now=now)


def _render(template: ConsentTemplate, *, document_id: uuid.UUID, language: str, patient_name: str,
            birth_date: dt.date, setup: ConsentSetup, now: dt.datetime) -> bytes:
    title, body = template.text(language)
    data = ConsentDocumentInput(document_id=document_id, clinic_name=setup.clinic_name, purpose=template.purpose.value,
                                template_version=template.version, template_sha256=template.sha256 or "",
                                language=language, title=title, body=body, patient_name=patient_name,
                                birth_date=birth_date, document_date=now.astimezone(setup.zone).date())
    return render_consent_pdf(data) if setup.font is None else render_consent_pdf(data, font_path=setup.font,
                                                                                    bold_font_path=setup.font)


def render_preview(template: ConsentTemplate, *, language: str, setup: ConsentSetup, now: dt.datetime) -> bytes:
    """An admin's preview of a draft, filled with a sample patient."""
    sample = "Иванова Мария Петровна" if language == "ru" else "Mary Smith"
    return _render(template, document_id=uuid.UUID(int=0), language=language, patient_name=sample,
                   birth_date=dt.date(1950, 1, 1), setup=setup, now=now)


async def load_document(session: AsyncSession, document_id: uuid.UUID, actor: Actor, *,
                        for_change: bool = False) -> ConsentDocument:
    """The document if this actor may see it: its patient, or staff; anyone else gets 404."""
    query = select(ConsentDocument).where(ConsentDocument.id == document_id)
    if for_change:
        query = query.with_for_update()
    document = (await session.scalars(query)).one_or_none()
    if document is None or not await may_act_for(session, actor, document.patient_id):
        raise NotFound()
    return document


async def may_act_for(session: AsyncSession, actor: Actor, patient_id: uuid.UUID) -> bool:
    """A patient for themself; an admin for anyone; a physician for patients booked with them (a booking the
    patient cancelled gives no access)."""
    if actor.role is Role.patient:
        return actor.patient_id == patient_id
    if actor.role is Role.admin:
        return True
    if actor.role is Role.physician:
        found = await session.scalar(select(Consultation.id).join(Physician, Physician.id == Consultation.physician_id)
                                     .where(Physician.user_id == actor.user_id, Consultation.patient_id == patient_id,
                                            Consultation.status != ConsultationStatus.cancelled)
                                     .limit(1))
        return found is not None
    return False


async def _ensure_signable(session: AsyncSession, document: ConsentDocument) -> None:
    """Not signed yet, and still of the current version: a patient never signs a text the clinic replaced."""
    if await session.scalar(select(Consent.id).where(Consent.document_id == document.id)) is not None:
        raise AlreadySigned()
    template = await session.get(ConsentTemplate, document.template_id)
    if template is None or (await templates.current(session, template.purpose)).id != template.id:
        raise DocumentOutdated()


@dataclass(frozen=True)
class CodeToSend:
    otp: ConsentOtp
    code: str
    channel: OtpChannel
    destination: str  # the real address; used to send, never stored or logged


async def request_code(session: AsyncSession, *, document_id: uuid.UUID, channel: OtpChannel, actor: Actor,
                       setup: ConsentSetup, now: dt.datetime) -> CodeToSend:
    """A new one-time code for this document. Only the newest code signs (`sign_with_code` tries no other), so
    earlier ones stop working once this one exists, and work again if it is forgotten undelivered."""
    document = await load_document(session, document_id, actor, for_change=True)
    if actor.role is not Role.patient:
        raise NotFound()
    await _ensure_signable(session, document)
    recent = await session.scalar(select(func.count()).select_from(ConsentOtp).where(
        ConsentOtp.document_id == document.id, ConsentOtp.created_at > now - dt.timedelta(hours=1)))
    if (recent or 0) >= setup.otp_per_hour:
        raise TooManyCodes()
    patient, user = await _patient_user(session, document.patient_id)
    destination = user.email if channel is OtpChannel.email else patient.phone
    if not destination:
        raise NoDestination()
    masked = rules.mask_email(destination) if channel is OtpChannel.email else rules.mask_phone(destination)
    code = f"{secrets.randbelow(1_000_000):06d}"
    otp = ConsentOtp(id=uuid.uuid4(), document_id=document.id, document_sha256=document.sha256, channel=channel,
                     destination_masked=masked, code_hash="", created_at=now, expires_at=now + setup.otp_ttl)
    otp.code_hash = rules.otp_hash(setup.otp_key, otp_id=str(otp.id), document_sha256=document.sha256, code=code)
    session.add(otp)
    await session.flush()
    return CodeToSend(otp, code, channel, destination)


async def forget_code(session: AsyncSession, *, otp_id: uuid.UUID) -> None:
    """A code that could not be delivered: it never counted against the patient's hourly allowance."""
    otp = await session.get(ConsentOtp, otp_id)
    if otp is not None and otp.used_at is None:
        await session.delete(otp)


async def sign_with_code(session: AsyncSession, *, document_id: uuid.UUID, code: str, actor: Actor, client: Client,
                         ctx: AuditContext, setup: ConsentSetup, now: dt.datetime) -> Consent | CodeRefused:
    """A simple e-signature: the latest code sent for this document, entered by its patient."""
    document = await load_document(session, document_id, actor, for_change=True)
    if actor.role is not Role.patient:
        raise NotFound()
    await _ensure_signable(session, document)
    otp = (await session.scalars(select(ConsentOtp).where(ConsentOtp.document_id == document.id)
                                 .order_by(ConsentOtp.created_at.desc()).limit(1).with_for_update()
                                 .execution_options(populate_existing=True))).one_or_none()
    if otp is None:
        return CodeRefused("otp_missing", "Ask for a code first")
    refusal = rules.otp_usable(used=otp.used_at is not None, expires_at=otp.expires_at, attempts=otp.attempts,
                               max_attempts=setup.otp_attempts, bound_sha256=otp.document_sha256,
                               document_sha256=document.sha256, now=now)
    if refusal is not None:
        return CodeRefused(refusal.value, _REFUSALS[refusal], attempts_left=0)
    otp.attempts += 1
    if not rules.otp_matches(setup.otp_key, otp_id=str(otp.id), document_sha256=document.sha256, code=code,
                             stored_hash=otp.code_hash):
        await audit.record(session, ctx=ctx, action="consent.code_refused", object_type="consent_document",
                           object_id=document.id, subject_patient_id=document.patient_id, outcome="failure", now=now)
        return CodeRefused("otp_wrong", "The code is not right", attempts_left=setup.otp_attempts - otp.attempts)
    otp.used_at = now
    evidence = {"method": "one_time_code", "document_sha256": document.sha256, "otp_id": str(otp.id),
                "channel": otp.channel.value, "destination": otp.destination_masked,
                "code_sent_at": rules.timestamp(otp.created_at), "code_entered_at": rules.timestamp(now),
                "attempt": otp.attempts, **_client_evidence(client)}
    return await _record(session, document=document, level=SignatureLevel.simple, evidence=evidence, blob=None,
                         media_type=None, actor=actor, ctx=ctx, setup=setup, now=now)


_REFUSALS = {rules.OtpRefusal.used: "This code was already used; ask for a new one",
             rules.OtpRefusal.expired: "This code has expired; ask for a new one",
             rules.OtpRefusal.attempts: "Too many wrong tries with this code; ask for a new one",
             rules.OtpRefusal.wrong_document: "This code was sent for another document"}


async def sign_with_certificate(session: AsyncSession, *, document_id: uuid.UUID, signature: bytes, actor: Actor,
                                client: Client, ctx: AuditContext, setup: ConsentSetup,
                                now: dt.datetime) -> Consent:
    """An enhanced e-signature: a detached CMS signature over the PDF by the patient's own certificate."""
    document = await load_document(session, document_id, actor, for_change=True)
    if actor.role is not Role.patient:
        raise NotFound()
    if setup.verifier is None:
        raise EnhancedNotConfigured()
    await _ensure_signable(session, document)
    patient, user = await _patient_user(session, document.patient_id)
    try:
        verified = await setup.verifier.verify(document=document.pdf, signature=signature,
                                               signer=Signer(email=user.email, snils=patient.snils), at=now)
    except SignatureRejected as rejected:
        raise SignatureRefused(rejected.code, rejected.message) from None
    level = SignatureLevel.enhanced_qualified if verified.qualified else SignatureLevel.enhanced_unqualified
    evidence = {"method": "cms_detached", "document_sha256": document.sha256,
                "signer": {"email": user.email, "snils": patient.snils},
                "signature_sha256": rules.sha256_hex(verified.signature_der), "subject": verified.subject,
                "issuer": verified.issuer, "serial_number": verified.serial_number,
                "certificate_sha256": verified.certificate_sha256,
                "not_before": rules.timestamp(verified.not_before), "not_after": rules.timestamp(verified.not_after),
                "qualified": verified.qualified, "policy_oids": list(verified.policy_oids),
                "digest_algorithm": verified.digest_algorithm, "signature_algorithm": verified.signature_algorithm,
                "claimed_signing_time": None if verified.claimed_signing_time is None
                else rules.timestamp(verified.claimed_signing_time),
                "verified_at": rules.timestamp(now), **_client_evidence(client)}
    return await _record(session, document=document, level=level, evidence=evidence, blob=verified.signature_der,
                         media_type="application/pkcs7-signature", actor=actor, ctx=ctx, setup=setup, now=now)


SCAN_TYPES = {"application/pdf": b"%PDF-", "image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


async def attest_paper(session: AsyncSession, *, document_id: uuid.UUID, scan: bytes, media_type: str, note: str,
                       actor: Actor, client: Client, ctx: AuditContext, setup: ConsentSetup,
                       now: dt.datetime) -> Consent:
    """Staff attest that the patient signed the printed document by hand; the scan is kept."""
    document = await load_document(session, document_id, actor, for_change=True)
    if actor.role not in (Role.admin, Role.physician):
        raise NotFound()
    await _ensure_signable(session, document)
    evidence = {"method": "paper_signed_in_person", "document_sha256": document.sha256,
                "scan_sha256": rules.sha256_hex(scan), "scan_media_type": media_type, "scan_bytes": len(scan),
                "attested_by_user_id": str(actor.user_id), "attested_by_role": actor.role.value, "note": note,
                "attested_at": rules.timestamp(now), **_client_evidence(client)}
    return await _record(session, document=document, level=SignatureLevel.in_person, evidence=evidence, blob=scan,
                         media_type=media_type, actor=actor, ctx=ctx, setup=setup, now=now)


def _client_evidence(client: Client) -> dict[str, Any]:
    """The browser's own words, made safe to store and seal: valid UTF-8 (a header may carry any bytes), no
    control characters, bounded."""
    agent = None
    if client.user_agent:
        text = client.user_agent.encode("utf-8", "replace").decode("utf-8")
        agent = "".join(c if c.isprintable() else "?" for c in text)[:USER_AGENT_MAX]
    return {"ip_hash": client.ip_hash, "user_agent": agent}


def sealed_fields(consent: Consent) -> dict[str, Any]:
    """The stored values of the sealed fields, in the payload's textual form."""
    return {"consent_id": str(consent.id), "patient_id": str(consent.patient_id), "purpose": consent.purpose.value,
            "template_version": consent.template_version, "template_sha256": consent.template_sha256,
            "document_sha256": consent.document_sha256, "level": consent.level.value,
            "evidence_sha256": consent.evidence_sha256, "signed_at": rules.timestamp(consent.signed_at)}


async def _record(session: AsyncSession, *, document: ConsentDocument, level: SignatureLevel,
                  evidence: dict[str, Any], blob: bytes | None, media_type: str | None, actor: Actor,
                  ctx: AuditContext, setup: ConsentSetup, now: dt.datetime) -> Consent:
    template = await session.get(ConsentTemplate, document.template_id)
    if template is None or template.sha256 is None:
        raise RuntimeError("a consent document always comes from a published template")
    consent = Consent(id=uuid.uuid4(), patient_id=document.patient_id, document_id=document.id,
                      template_id=template.id, purpose=template.purpose, template_version=template.version,
                      template_sha256=template.sha256, document_sha256=document.sha256, language=document.language,
                      level=level, evidence=evidence, evidence_sha256=rules.sha256_hex(rules.canonical_json(evidence)),
                      signature_blob=blob, signature_media_type=media_type, signed_at=now,
                      signed_by_user_id=actor.user_id, sealed_payload="", seal="", seal_key_id="")
    sealed = seal.seal(setup.seal_keys, rules.sealed_payload(sealed_fields(consent)))
    consent.sealed_payload, consent.seal, consent.seal_key_id = sealed.payload, sealed.signature, sealed.key_id
    session.add(consent)
    await session.flush()
    await audit.record(session, ctx=ctx, action="consent.signed", object_type="consent", object_id=consent.id,
                       subject_patient_id=consent.patient_id,
                       detail={"purpose": consent.purpose.value, "level": level.value,
                               "version": consent.template_version}, now=now)
    return consent


def scan_media_type(scan: bytes) -> str | None:
    """What the upload really is, from its first bytes (the browser's claim is not trusted)."""
    for media_type, magic in SCAN_TYPES.items():
        if scan.startswith(magic):
            return media_type
    return None
