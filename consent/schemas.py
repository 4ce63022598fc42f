"""Request and response models of the consent API (the source of its OpenAPI description)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from server.http.parsing import RequestModel

Purpose = Literal["telemedicine_care", "recording", "personal_data"]
Language = Literal["ru", "en"]
TITLE = Field(min_length=1, max_length=200)
BODY = Field(min_length=1, max_length=50_000)


class TemplateIn(RequestModel):
    purpose: Purpose
    title_ru: str = TITLE
    body_ru: str = BODY
    title_en: str = TITLE
    body_en: str = BODY


class TemplateTextIn(RequestModel):
    title_ru: str = TITLE
    body_ru: str = BODY
    title_en: str = TITLE
    body_en: str = BODY


class PublishIn(RequestModel):
    material: bool = Field(default=True, description="Older consents to this purpose must be signed again")


class TemplatesQuery(RequestModel):
    purpose: Purpose | None = None


class PreviewQuery(RequestModel):
    language: Language = "ru"


class TemplateOut(BaseModel):
    id: uuid.UUID
    purpose: str
    version: int
    status: str
    material: bool
    title_ru: str
    body_ru: str
    title_en: str
    body_en: str
    sha256: str | None
    created_at: dt.datetime
    published_at: dt.datetime | None


class TemplateList(BaseModel):
    items: list[TemplateOut]


class DocumentIn(RequestModel):
    purpose: Purpose
    language: Language = "ru"
    patient_id: uuid.UUID | None = Field(default=None, description="Staff preparing a paper consent: whose")


class DocumentOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    purpose: str
    template_version: int
    language: str
    title: str
    sha256: str = Field(description="SHA-256 of the PDF: what a signature covers")
    pdf_url: str
    created_at: dt.datetime


class CodeIn(RequestModel):
    channel: Literal["email", "sms"] = "email"


class CodeSentOut(BaseModel):
    channel: str
    destination: str = Field(description="Masked, e.g. i***@mail.ru")
    expires_at: dt.datetime
    attempts: int


class SignIn(RequestModel):
    code: str = Field(pattern=r"^[0-9]{6}$", description="The six digits sent to the patient")


class PaperQuery(RequestModel):
    note: str = Field(default="", max_length=500, description="What staff attest, e.g. who witnessed the signing")


class ConsentOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    document_id: uuid.UUID
    purpose: str
    template_version: int
    template_sha256: str
    document_sha256: str
    language: str
    level: str
    evidence: dict[str, Any]
    signed_at: dt.datetime
    withdrawn_at: dt.datetime | None
    status: Literal["active", "inactive"]
    current: bool = Field(description="Counts now: not withdrawn, not outdated, not expired")
    seal_key_id: str
    pdf_url: str


class PurposeStatusOut(BaseModel):
    purpose: str
    required: bool
    problem: str | None = Field(description="missing | outdated | withdrawn | expired | level_too_low | no_template")
    current_version: int | None
    title_ru: str | None
    title_en: str | None


class ConsentStatusOut(BaseModel):
    may_start: bool
    may_record: bool
    purposes: list[PurposeStatusOut]
    consents: list[ConsentOut]


class CheckOut(BaseModel):
    name: str
    ok: bool
    detail: str


class VerificationOut(BaseModel):
    consent_id: uuid.UUID
    ok: bool
    checks: list[CheckOut]


class SealKeysOut(BaseModel):
    keys: list[dict[str, str]]
