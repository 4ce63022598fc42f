"""A consultation's protocol: the one editable draft, the PDFs prepared for signing, and the signed versions.

Signed versions are never updated: an amendment is a new version with its own PDF and signature, so what a
physician signed years ago is still there, byte for byte, next to what replaced it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk
from server.scheduling.models import ConsultationKind


class ProtocolSignatureLevel(StrEnum):
    """How the physician signed. `server_session` is a simple e-signature in the law's terms: the clinic's
    seal attests that the physician's own signed-in session asked for it."""

    enhanced_qualified = "enhanced_qualified"
    enhanced_unqualified = "enhanced_unqualified"
    server_session = "server_session"


def _enum(kind: type[StrEnum], length: int = 24) -> Enum:
    return Enum(kind, native_enum=False, length=length, validate_strings=True)


class Protocol(Base):
    """One per consultation. The draft lives here; `revision` only ever grows (it is the draft's ETag), so an
    autosave from a page opened before a signing or an amendment can never match a newer draft."""

    __tablename__ = "protocols"

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="RESTRICT"),
                                                       unique=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"), index=True)
    physician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physicians.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[ConsultationKind] = mapped_column(_enum(ConsultationKind, 16))
    revision: Mapped[int] = mapped_column(Integer, default=0)
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # None: no draft open
    draft_reason: Mapped[str | None] = mapped_column(Text, default=None)  # why an amendment is made
    draft_updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    signed_versions: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProtocolDocument(Base):
    """A PDF rendered from one draft revision: the exact bytes an external signer signs."""

    __tablename__ = "protocol_documents"

    id: Mapped[uuid_pk]
    protocol_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("protocols.id", ondelete="RESTRICT"), index=True)
    revision: Mapped[int] = mapped_column(Integer)  # the draft revision it was rendered from
    version: Mapped[int] = mapped_column(Integer)  # the version it becomes when signed
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    amendment_reason: Mapped[str | None] = mapped_column(Text, default=None)
    language: Mapped[str] = mapped_column(String(2))
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


class ProtocolVersion(Base):
    """A signed version. `sealed_payload` is the canonical JSON the clinic's key signed (for a session
    signature, that seal is the signature); verification compares the stored fields with it."""

    __tablename__ = "protocol_versions"
    __table_args__ = (UniqueConstraint("protocol_id", "version"),)

    id: Mapped[uuid_pk]
    protocol_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("protocols.id", ondelete="RESTRICT"))
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="RESTRICT"),
                                                       index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"), index=True)
    physician_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("physicians.id", ondelete="RESTRICT"))
    version: Mapped[int] = mapped_column(Integer)
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("protocol_documents.id", ondelete="RESTRICT"),
                                                   unique=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    amendment_reason: Mapped[str | None] = mapped_column(Text, default=None)
    language: Mapped[str] = mapped_column(String(2))
    pdf_sha256: Mapped[str] = mapped_column(String(64))
    pdf_size: Mapped[int] = mapped_column(Integer)
    level: Mapped[ProtocolSignatureLevel] = mapped_column(_enum(ProtocolSignatureLevel))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    evidence_sha256: Mapped[str] = mapped_column(String(64))
    signature_cms: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # DER; enhanced only
    signed_at: Mapped[dt.datetime]
    signed_by_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    sealed_payload: Mapped[str] = mapped_column(Text)
    seal: Mapped[str] = mapped_column(String(128))  # base64 Ed25519
    seal_key_id: Mapped[str] = mapped_column(String(64))
