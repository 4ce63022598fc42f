"""Re-checking a signed protocol version from what is stored, years later: the PDF against its hash, the
clinic's seal, every sealed field, and the physician's signature (CMS re-verified, or the session binding)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from consent import seal
from consent.rules import canonical_json, sha256_hex
from consent.services import Check
from consent.setup import ConsentSetup
from consent.signatures import SignatureRejected, Signer
from server.records import rules
from server.records.models import ProtocolDocument, ProtocolSignatureLevel, ProtocolVersion
from server.records.signing import PAYLOAD_KIND, sealed_fields


@dataclass(frozen=True)
class Verification:
    version_id: uuid.UUID
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


async def verify(session: AsyncSession, version: ProtocolVersion, *, setup: ConsentSetup) -> Verification:
    """Every check says what is wrong, if anything is; `ok` only when all hold."""
    document = await session.get(ProtocolDocument, version.document_id)
    sealed = _sealed(version)
    checks = [_check_seal(version, setup), _check_fields(version, sealed), _check_document(version, document),
              _check_evidence(version, sealed)]
    checks.append(await _check_signature(version, document, setup))
    return Verification(version.id, checks)


def _sealed(version: ProtocolVersion) -> dict[str, object]:
    try:
        sealed = json.loads(version.sealed_payload)
    except ValueError:
        return {}
    return sealed if isinstance(sealed, dict) else {}


def _check_seal(version: ProtocolVersion, setup: ConsentSetup) -> Check:
    try:
        seal.check(setup.seal_keys, payload=version.sealed_payload, signature=version.seal, key_id=version.seal_key_id)
    except seal.SealProblem as problem:
        return Check("seal", False, str(problem))
    return Check("seal", True, f"sealed by the clinic's key {version.seal_key_id}")


def _check_fields(version: ProtocolVersion, sealed: dict[str, object]) -> Check:
    if sealed.get("kind") != PAYLOAD_KIND:
        return Check("fields", False, "the sealed payload is not a protocol record")
    changed = rules.changed_fields(sealed_fields(version), sealed)
    if changed:
        return Check("fields", False, "changed after sealing: " + ", ".join(changed))
    return Check("fields", True, "every stored field matches the sealed record")


def _check_document(version: ProtocolVersion, document: ProtocolDocument | None) -> Check:
    if document is None:
        return Check("document", False, "the signed PDF is missing")
    actual = sha256_hex(document.pdf)
    if actual != version.pdf_sha256 or len(document.pdf) != version.pdf_size:
        return Check("document", False, f"the PDF's SHA-256 is {actual}, not the signed {version.pdf_sha256}")
    if sha256_hex(canonical_json(document.content)) != version.content_sha256:
        return Check("document", False, "the stored protocol fields differ from those that were signed")
    return Check("document", True, "the PDF's SHA-256 matches the signed hash")


def _check_evidence(version: ProtocolVersion, sealed: dict[str, object]) -> Check:
    evidence = version.evidence if isinstance(version.evidence, dict) else {}
    try:
        digest = sha256_hex(canonical_json(evidence))
    except (TypeError, ValueError):
        digest = ""
    if digest != version.evidence_sha256 or sealed.get("evidence") != evidence:
        return Check("evidence", False, "the stored signature evidence was changed after sealing")
    if evidence.get("pdf_sha256") != version.pdf_sha256 or evidence.get("version") != version.version:
        return Check("evidence", False, "the signature evidence names another document")
    return Check("evidence", True, "the evidence matches its sealed form")


async def _check_signature(version: ProtocolVersion, document: ProtocolDocument | None,
                           setup: ConsentSetup) -> Check:
    evidence = version.evidence if isinstance(version.evidence, dict) else {}
    if version.level is ProtocolSignatureLevel.server_session:
        return Check("signature", evidence.get("method") == "server_session",
                     f"signed in the physician's session {evidence.get('session_id')}, attested by the clinic's seal")
    if setup.verifier is None or document is None or version.signature_cms is None:
        return Check("signature", False, "cannot re-verify the enhanced signature: no trusted CAs or no signature")
    try:
        verified = await setup.verifier.verify(document=document.pdf, signature=version.signature_cms,
                                               signer=_signer(evidence), at=version.signed_at)
    except SignatureRejected as rejected:
        return Check("signature", False, f"{rejected.code}: {rejected.message}")
    if sha256_hex(verified.signature_der) != evidence.get("signature_sha256"):
        return Check("signature", False, "the stored signature is not the one the evidence names")
    return Check("signature", True, f"enhanced signature by {verified.subject} verifies over the PDF")


def _signer(evidence: dict[str, object]) -> Signer:
    """The e-mail the certificate was matched to when signing: a later change of address changes nothing."""
    return Signer(email=str(evidence.get("signer_email", "")))
