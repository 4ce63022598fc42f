"""A patient's consents over time: the gate before every consultation, withdrawal, and verification.

`check_gate` is what check-in and the call ask: may this consultation start, may it be recorded, and if
not, which documents need signing and why.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import rules, seal, templates
from consent.models import Consent, ConsentDocument, ConsentPurpose, ConsentTemplate, SignatureLevel
from consent.problems import AlreadyWithdrawn
from consent.setup import ConsentSetup
from consent.signatures import SignatureRejected, Signer
from consent.signing import Actor, may_act_for, sealed_fields
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role
from server.http.problems import NotFound
from server.scheduling.live import WaitingRoomBus
from server.scheduling.models import Consultation, ConsultationStatus

log = structlog.get_logger("telemed.consent")


class HasPatient(Protocol):
    @property
    def patient_id(self) -> uuid.UUID: ...


async def patient_gate(session: AsyncSession, *, patient_id: uuid.UUID, policy: rules.GatePolicy,
                       now: dt.datetime) -> rules.GateDecision:
    consents = (await session.scalars(select(Consent).where(Consent.patient_id == patient_id))).all()
    facts = [rules.ConsentFacts(c.purpose, c.template_version, c.level, c.signed_at, c.withdrawn_at) for c in consents]
    return rules.decide(facts, minimum_versions=await templates.minimum_versions(session), policy=policy, now=now)


async def check_gate(session: AsyncSession, consultation: HasPatient, *, policy: rules.GatePolicy,
                     now: dt.datetime) -> rules.GateDecision:
    """May this consultation start now, and may it be recorded?"""
    return await patient_gate(session, patient_id=consultation.patient_id, policy=policy, now=now)


def gate_problems(decision: rules.GateDecision) -> list[dict[str, str | bool]]:
    """Every purpose with a problem (blocking ones carry `required`), as plain values for a problem document
    or a queue row."""
    return [{"purpose": s.purpose.value, "problem": s.problem.value, "required": s.required}
            for s in decision.problems if s.problem is not None]


async def announce(session: AsyncSession, bus: WaitingRoomBus, *, patient_id: uuid.UUID, event: str) -> None:
    """Physicians whose queue holds this patient see the consent status change without reloading."""
    rows = (await session.execute(select(Consultation.id, Consultation.physician_id).where(
        Consultation.patient_id == patient_id,
        Consultation.status.in_([ConsultationStatus.waiting, ConsultationStatus.in_call])))).all()
    for consultation_id, physician_id in rows:
        bus.publish(physician_id, {"event": event, "consultation_id": str(consultation_id)})


async def patient_consents(session: AsyncSession, *, patient_id: uuid.UUID) -> list[Consent]:
    return list((await session.scalars(select(Consent).where(Consent.patient_id == patient_id)
                                       .order_by(Consent.signed_at.desc()))).all())


async def load(session: AsyncSession, consent_id: uuid.UUID, actor: Actor, *, for_change: bool = False) -> Consent:
    """The consent if this actor may see it; anyone else gets 404, exactly as if it did not exist."""
    query = select(Consent).where(Consent.id == consent_id)
    if for_change:
        query = query.with_for_update().execution_options(populate_existing=True)
    consent = (await session.scalars(query)).one_or_none()
    if consent is None or not await may_act_for(session, actor, consent.patient_id):
        raise NotFound()
    return consent


async def audit_read(session: AsyncSession, consent: Consent, *, actor: Actor, ctx: AuditContext, what: str,
                     now: dt.datetime) -> None:
    """Staff reading a patient's consent is an entry in the patient's access log."""
    if actor.role is not Role.patient:
        await audit.record(session, ctx=ctx, action=f"consent.{what}", object_type="consent", object_id=consent.id,
                           subject_patient_id=consent.patient_id, now=now)


WithdrawalListener = Callable[["Withdrawal"], Awaitable[None]]


@dataclass(frozen=True)
class Withdrawal:
    """Published when a patient withdraws: the call stops recording on a `recording` withdrawal."""

    patient_id: uuid.UUID
    purpose: ConsentPurpose
    at: dt.datetime


@dataclass
class WithdrawalEvents:
    """In-process listeners for withdrawals (the media worker's recorder subscribes here)."""

    listeners: list[WithdrawalListener] = field(default_factory=list)

    def subscribe(self, listener: WithdrawalListener) -> None:
        self.listeners.append(listener)

    async def publish(self, event: Withdrawal) -> None:
        for listener in list(self.listeners):
            try:
                await listener(event)
            except Exception:  # one broken listener must not keep the others from stopping a recording
                log.exception("consent.withdrawal_listener_failed", purpose=event.purpose.value)


async def withdraw(session: AsyncSession, *, consent_id: uuid.UUID, actor: Actor, ctx: AuditContext,
                   now: dt.datetime) -> tuple[Consent, Withdrawal]:
    """The patient withdraws a purpose: this consent and any other still standing for the same purpose."""
    consent = await load(session, consent_id, actor, for_change=True)
    if actor.role is not Role.patient:
        raise NotFound()
    if consent.withdrawn_at is not None:
        raise AlreadyWithdrawn()
    standing = (await session.scalars(select(Consent).where(
        Consent.patient_id == consent.patient_id, Consent.purpose == consent.purpose,
        Consent.withdrawn_at.is_(None)).with_for_update())).all()
    for item in standing:
        item.withdrawn_at, item.withdrawn_by_user_id = now, actor.user_id
        await audit.record(session, ctx=ctx, action="consent.withdrawn", object_type="consent", object_id=item.id,
                           subject_patient_id=item.patient_id, detail={"purpose": item.purpose.value}, now=now)
    return consent, Withdrawal(consent.patient_id, consent.purpose, now)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verification:
    consent_id: uuid.UUID
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


async def verify(session: AsyncSession, consent: Consent, *, setup: ConsentSetup) -> Verification:
    """Re-check everything from the stored evidence alone: the seal, each sealed field, the document, the
    template, the evidence and the patient's signature. Each check says what is wrong if anything is."""
    checks = [_check_seal(consent, setup), _check_fields(consent)]
    document = await session.get(ConsentDocument, consent.document_id)
    if document is None:
        checks.append(Check("document", False, "the signed document is missing"))
    else:
        actual = rules.sha256_hex(document.pdf)
        checks.append(Check("document", actual == consent.document_sha256,
                            "the PDF's SHA-256 matches the sealed hash" if actual == consent.document_sha256
                            else f"the PDF's SHA-256 is {actual}, not the sealed {consent.document_sha256}"))
    checks.append(await _check_template(session, consent))
    try:
        evidence_hash = rules.sha256_hex(rules.canonical_json(consent.evidence))
    except (TypeError, ValueError):  # not a JSON object any more
        evidence_hash = ""
    checks.append(Check("evidence", evidence_hash == consent.evidence_sha256,
                        "the evidence matches its sealed hash" if evidence_hash == consent.evidence_sha256
                        else "the stored evidence was changed after sealing"))
    checks.append(await _check_signature(session, consent, document, setup))
    return Verification(consent.id, checks)


def _check_seal(consent: Consent, setup: ConsentSetup) -> Check:
    try:
        seal.check(setup.seal_keys, payload=consent.sealed_payload, signature=consent.seal, key_id=consent.seal_key_id)
    except seal.SealProblem as problem:
        return Check("seal", False, str(problem))
    return Check("seal", True, f"sealed by the clinic's key {consent.seal_key_id}")


def _check_fields(consent: Consent) -> Check:
    try:
        sealed = json.loads(consent.sealed_payload)
    except ValueError:
        return Check("fields", False, "the sealed payload is not JSON")
    changed = rules.changed_fields(sealed_fields(consent), sealed if isinstance(sealed, dict) else {})
    if changed:
        return Check("fields", False, "changed after sealing: " + ", ".join(changed))
    return Check("fields", True, "every stored field matches the sealed record")


async def _check_template(session: AsyncSession, consent: Consent) -> Check:
    template = await session.get(ConsentTemplate, consent.template_id)
    if template is None:
        return Check("template", False, "the template version is missing")
    actual = rules.template_sha256(purpose=template.purpose.value, version=template.version,
                                   title_ru=template.title_ru, body_ru=template.body_ru, title_en=template.title_en,
                                   body_en=template.body_en)
    if actual != consent.template_sha256 or template.version != consent.template_version:
        return Check("template", False, "the template's text no longer matches the version that was signed")
    return Check("template", True, f"version {template.version} of the text is unchanged")


async def _check_signature(session: AsyncSession, consent: Consent, document: ConsentDocument | None,
                           setup: ConsentSetup) -> Check:
    evidence = consent.evidence if isinstance(consent.evidence, dict) else {}
    if evidence.get("document_sha256") != consent.document_sha256:
        return Check("signature", False, "the signature evidence names another document")
    if consent.level is SignatureLevel.simple:
        return Check("signature", True, f"simple e-signature: a one-time code sent by {evidence.get('channel')} "
                                        f"to {evidence.get('destination')} was entered")
    blob = consent.signature_blob or b""
    if consent.level is SignatureLevel.in_person:
        if rules.sha256_hex(blob) != evidence.get("scan_sha256"):
            return Check("signature", False, "the scan of the paper consent was changed")
        return Check("signature", True, "paper consent signed in person; the scan matches")
    if setup.verifier is None or document is None:
        return Check("signature", False, "cannot re-verify the enhanced signature: no trusted CAs are configured")
    # The identity the signature was matched to when it was made: a later change of e-mail changes nothing.
    signer = evidence.get("signer")
    if not isinstance(signer, dict):
        return Check("signature", False, "the evidence does not name whom the signature was matched to")
    try:
        verified = await setup.verifier.verify(document=document.pdf, signature=blob,
                                               signer=Signer(email=str(signer.get("email", "")),
                                                             snils=signer.get("snils")),
                                               at=consent.signed_at)
    except SignatureRejected as rejected:
        return Check("signature", False, f"{rejected.code}: {rejected.message}")
    if rules.sha256_hex(verified.signature_der) != evidence.get("signature_sha256"):
        return Check("signature", False, "the stored signature is not the one the evidence names")
    return Check("signature", True, f"enhanced signature by {verified.subject} verifies over the document")
