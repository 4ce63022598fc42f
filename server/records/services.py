"""Writing a consultation's protocol and reading it: drafts with optimistic concurrency, amendments, the
signed versions, and an audit entry for every read and every refused field.

Refusals that must leave a trace (a diagnosis sent for a primary consultation) are returned, not raised,
so the caller commits the audit entry before answering.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role
from server.http.problems import NotFound
from server.records import rules
from server.records.content import ProtocolContent, loaded, stored
from server.records.models import Protocol, ProtocolDocument, ProtocolVersion
from server.records.problems import (
    AmendmentOpen,
    AmendmentRequired,
    DraftOutdated,
    PreconditionRequired,
    PrimaryConsultationRule,
    ProtocolNotOpen,
)
from server.scheduling import services as scheduling
from server.scheduling.models import Consultation
from server.scheduling.services import Viewer


async def consultation_for_author(session: AsyncSession, consultation_id: uuid.UUID, viewer: Viewer) -> Consultation:
    """The consultation, locked, if the viewer is its own physician: everyone else gets 404, admins too
    (a protocol is the treating physician's own statement)."""
    consultation = await scheduling.load(session, consultation_id, viewer, for_change=True)
    if viewer.role is not Role.physician or consultation.physician_id != viewer.physician_id:
        raise NotFound()
    return consultation


async def protocol_of(session: AsyncSession, consultation_id: uuid.UUID, *, for_change: bool = False
                      ) -> Protocol | None:
    query = select(Protocol).where(Protocol.consultation_id == consultation_id)
    if for_change:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.scalars(query)).one_or_none()


async def _protocol_for_writing(session: AsyncSession, consultation: Consultation, now: dt.datetime) -> Protocol:
    """The consultation's protocol row, made on first use (the consultation row is locked, so only once)."""
    protocol = await protocol_of(session, consultation.id, for_change=True)
    if protocol is None:
        protocol = Protocol(id=uuid.uuid4(), consultation_id=consultation.id, patient_id=consultation.patient_id,
                            physician_id=consultation.physician_id, kind=consultation.kind, revision=0, draft=None,
                            signed_versions=0, created_at=now)
        session.add(protocol)
        await session.flush()
    return protocol


async def refuse_forbidden(session: AsyncSession, consultation: Consultation, content: ProtocolContent, *,
                           ctx: AuditContext, now: dt.datetime) -> PrimaryConsultationRule | None:
    """The refusal for fields a primary consultation may not carry, with its audit entry (QA samples on it)."""
    problems = rules.forbidden_fields(consultation.kind, content)
    if not problems:
        return None
    await audit.record(session, ctx=ctx, action="protocol.forbidden_field_refused", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id, outcome="failure",
                       detail={"kind": consultation.kind.value, "rules": [p.type for p in problems],
                               "fields": [p.field for p in problems]}, now=now)
    return PrimaryConsultationRule(problems)


async def save_draft(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, content: ProtocolContent,
                     precondition: int | None, ctx: AuditContext, now: dt.datetime
                     ) -> Protocol | PrimaryConsultationRule:
    """Autosave. Idempotent: sending what is already stored changes nothing, whatever version it names, so a
    retried request after a lost answer succeeds. Otherwise the save must name the current revision."""
    consultation = await consultation_for_author(session, consultation_id, viewer)
    if not rules.may_draft(consultation.status):
        raise ProtocolNotOpen()
    refusal = await refuse_forbidden(session, consultation, content, ctx=ctx, now=now)
    if refusal is not None:
        return refusal
    protocol = await _protocol_for_writing(session, consultation, now)
    data = stored(content)
    if protocol.draft is None and protocol.signed_versions:
        raise AmendmentRequired()
    if protocol.draft == data:
        return protocol
    if protocol.draft is not None and precondition is None:
        raise PreconditionRequired()
    if protocol.draft is not None and not rules.draft_matches(protocol.revision, precondition):
        raise DraftOutdated(protocol.revision)
    first = protocol.draft is None
    protocol.draft, protocol.revision, protocol.draft_updated_at = data, protocol.revision + 1, now
    if first:  # one entry when writing starts, not one per autosave
        await audit.record(session, ctx=ctx, action="protocol.draft_started", object_type="protocol",
                           object_id=protocol.id, subject_patient_id=protocol.patient_id, now=now)
    return protocol


async def open_amendment(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, reason: str,
                         ctx: AuditContext, now: dt.datetime) -> Protocol:
    """A new draft from the latest signed version; signing it makes version N+1, and N stays as it was."""
    consultation = await consultation_for_author(session, consultation_id, viewer)
    protocol = await protocol_of(session, consultation.id, for_change=True)
    if protocol is None or not protocol.signed_versions:
        raise NotFound("There is no signed protocol to amend")
    if protocol.draft is not None:
        raise AmendmentOpen()
    latest = await _latest_version(session, protocol.id)
    document_content = await _signed_content(session, latest)
    protocol.draft, protocol.draft_reason = document_content, reason
    protocol.revision, protocol.draft_updated_at = protocol.revision + 1, now
    await audit.record(session, ctx=ctx, action="protocol.amendment_opened", object_type="protocol",
                       object_id=protocol.id, subject_patient_id=protocol.patient_id,
                       detail={"amends_version": latest.version}, now=now)
    return protocol


async def _latest_version(session: AsyncSession, protocol_id: uuid.UUID) -> ProtocolVersion:
    return (await session.scalars(select(ProtocolVersion).where(ProtocolVersion.protocol_id == protocol_id)
                                  .order_by(ProtocolVersion.version.desc()).limit(1))).one()


async def _signed_content(session: AsyncSession, version: ProtocolVersion) -> dict[str, object]:
    document = await session.get(ProtocolDocument, version.document_id)
    return dict(document.content) if document is not None else {}


@dataclass(frozen=True)
class ProtocolView:
    """What one reader may see: the draft only for the author, signed versions for the author, the patient
    and admins."""

    consultation: Consultation
    protocol: Protocol | None
    draft: ProtocolContent | None
    versions: list[ProtocolVersion]
    contents: dict[uuid.UUID, ProtocolContent]  # each version's signed fields, by version id


async def read_protocol(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, ctx: AuditContext,
                        now: dt.datetime) -> ProtocolView:
    """The protocol for this reader, and the read in the audit log (the patient sees who opened it)."""
    consultation = await scheduling.load(session, consultation_id, viewer)
    author = viewer.role is Role.physician and consultation.physician_id == viewer.physician_id
    protocol = await protocol_of(session, consultation.id)
    versions = await versions_of(session, consultation_id=consultation.id)
    draft = loaded(protocol.draft) if author and protocol is not None and protocol.draft is not None else None
    await audit.record(session, ctx=ctx, action="protocol.read", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail={"versions": len(versions), "draft": draft is not None}, now=now)
    return ProtocolView(consultation, protocol, draft, versions, await signed_contents(session, versions))


async def signed_contents(session: AsyncSession, versions: list[ProtocolVersion]) -> dict[uuid.UUID, ProtocolContent]:
    """The fields each version signed, without loading the PDFs."""
    by_document = {v.document_id: v.id for v in versions}
    rows = (await session.execute(select(ProtocolDocument.id, ProtocolDocument.content)
                                  .where(ProtocolDocument.id.in_(by_document)))).all() if by_document else []
    return {by_document[document_id]: loaded(content) for document_id, content in rows}


async def versions_of(session: AsyncSession, *, consultation_id: uuid.UUID) -> list[ProtocolVersion]:
    """Every signed version of a consultation's protocol, oldest first. No access check and no audit entry:
    for callers that have done both (the medical record page, the FHIR DocumentReference)."""
    return list((await session.scalars(select(ProtocolVersion).where(
        ProtocolVersion.consultation_id == consultation_id).order_by(ProtocolVersion.version))).all())


async def load_version(session: AsyncSession, *, consultation_id: uuid.UUID, version_id: uuid.UUID, viewer: Viewer,
                       ctx: AuditContext, what: str, now: dt.datetime) -> ProtocolVersion:
    """One signed version for a reader who may see the consultation, with the read audited; else 404."""
    consultation = await scheduling.load(session, consultation_id, viewer)
    version = await session.get(ProtocolVersion, version_id)
    if version is None or version.consultation_id != consultation.id:
        raise NotFound()
    await audit.record(session, ctx=ctx, action=f"protocol.{what}", object_type="protocol_version",
                       object_id=version.id, subject_patient_id=version.patient_id,
                       detail={"version": version.version}, now=now)
    return version


@dataclass(frozen=True)
class SignedVersion:
    """A signed version as the medical record and the FHIR DocumentReference describe it."""

    id: uuid.UUID
    consultation_id: uuid.UUID
    version: int
    document_id: uuid.UUID
    pdf_sha256: str
    pdf_size: int
    signed_at: dt.datetime
    level: str  # ProtocolSignatureLevel's value
    language: str
    amendment_reason: str | None


async def signed_versions(session: AsyncSession, *, consultation_id: uuid.UUID) -> list[SignedVersion]:
    """A consultation's signed protocol versions, oldest first; like `versions_of`, no access check and no
    audit entry (the caller has decided who reads and records the read)."""
    return [SignedVersion(v.id, v.consultation_id, v.version, v.document_id, v.pdf_sha256, v.pdf_size, v.signed_at,
                          v.level.value, v.language, v.amendment_reason)
            for v in await versions_of(session, consultation_id=consultation_id)]


async def version_pdf(session: AsyncSession, version: ProtocolVersion) -> bytes:
    """The signed PDF's bytes (the document row is never deleted: RESTRICT)."""
    document = await session.get(ProtocolDocument, version.document_id)
    if document is None:
        raise NotFound()
    return document.pdf


async def load_document(session: AsyncSession, *, consultation_id: uuid.UUID, document_id: uuid.UUID, viewer: Viewer,
                        ctx: AuditContext, now: dt.datetime) -> ProtocolDocument:
    """A prepared PDF, for its author only (it may be a draft nobody else should read), with the read audited."""
    consultation = await consultation_for_author(session, consultation_id, viewer)
    document = await session.get(ProtocolDocument, document_id)
    protocol = await protocol_of(session, consultation.id)
    if document is None or protocol is None or document.protocol_id != protocol.id:
        raise NotFound()
    await audit.record(session, ctx=ctx, action="protocol.document_downloaded", object_type="protocol_document",
                       object_id=document.id, subject_patient_id=protocol.patient_id, now=now)
    return document
