"""Consent templates (versioned texts), the documents rendered from them, signing codes, and signed consents.

A signed consent keeps everything an auditor needs years later without trusting anything else: the exact
PDF, the patient's signature or the evidence of a simple one, and the clinic's seal over the record.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, LargeBinary, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class ConsentPurpose(StrEnum):
    telemedicine_care = "telemedicine_care"
    recording = "recording"
    personal_data = "personal_data"


class TemplateStatus(StrEnum):
    draft = "draft"
    published = "published"


class SignatureLevel(StrEnum):
    """Russian e-signature law's levels, plus a paper consent signed by hand at the clinic."""

    simple = "simple"
    enhanced_unqualified = "enhanced_unqualified"
    enhanced_qualified = "enhanced_qualified"
    in_person = "in_person"


class OtpChannel(StrEnum):
    email = "email"
    sms = "sms"


def _enum(kind: type[StrEnum], length: int = 24) -> Enum:
    return Enum(kind, native_enum=False, length=length, validate_strings=True)


class ConsentTemplate(Base):
    """One version of one purpose's text, in both languages. Published versions never change: their hash
    is recorded at publication and every consent names the version and hash it was signed under."""

    __tablename__ = "consent_templates"
    __table_args__ = (UniqueConstraint("purpose", "version"),)

    id: Mapped[uuid_pk]
    purpose: Mapped[ConsentPurpose] = mapped_column(_enum(ConsentPurpose))
    version: Mapped[int]
    status: Mapped[TemplateStatus] = mapped_column(_enum(TemplateStatus), default=TemplateStatus.draft)
    # Material: the change matters to what the patient agreed to, so older consents need re-signing.
    material: Mapped[bool] = mapped_column(default=True)
    title_ru: Mapped[str] = mapped_column(String(200))
    body_ru: Mapped[str] = mapped_column(Text)
    title_en: Mapped[str] = mapped_column(String(200))
    body_en: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)
    published_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    published_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)

    def text(self, language: str) -> tuple[str, str]:
        return (self.title_ru, self.body_ru) if language == "ru" else (self.title_en, self.body_en)


class ConsentDocument(Base):
    """A PDF rendered for one patient from one published template: the bytes that get signed."""

    __tablename__ = "consent_documents"

    id: Mapped[uuid_pk]
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"), index=True)
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consent_templates.id", ondelete="RESTRICT"))
    language: Mapped[str] = mapped_column(String(2))
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))


class ConsentOtp(Base):
    """A one-time signing code, bound to one document's hash; only an HMAC of the code is kept."""

    __tablename__ = "consent_otps"

    id: Mapped[uuid_pk]
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consent_documents.id", ondelete="CASCADE"),
                                                   index=True)
    document_sha256: Mapped[str] = mapped_column(String(64))
    channel: Mapped[OtpChannel] = mapped_column(_enum(OtpChannel, 8))
    destination_masked: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Consent(Base):
    """A signed consent. `sealed_payload` is the canonical JSON the clinic's key signed; verification
    compares every column with it, so a changed field is named, and checks the seal over it."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_patient_purpose", "patient_id", "purpose"),)

    id: Mapped[uuid_pk]
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consent_documents.id", ondelete="RESTRICT"),
                                                   unique=True)
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consent_templates.id", ondelete="RESTRICT"))
    purpose: Mapped[ConsentPurpose] = mapped_column(_enum(ConsentPurpose))
    template_version: Mapped[int]
    template_sha256: Mapped[str] = mapped_column(String(64))
    document_sha256: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2))
    level: Mapped[SignatureLevel] = mapped_column(_enum(SignatureLevel))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    evidence_sha256: Mapped[str] = mapped_column(String(64))
    # The patient's CMS signature (DER) or the scan of the paper consent; none for a simple signature.
    signature_blob: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    signature_media_type: Mapped[str | None] = mapped_column(String(64), default=None)
    signed_at: Mapped[dt.datetime]
    signed_by_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    sealed_payload: Mapped[str] = mapped_column(Text)
    seal: Mapped[str] = mapped_column(String(128))  # base64 Ed25519 signature
    seal_key_id: Mapped[str] = mapped_column(String(64))
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    withdrawn_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)
