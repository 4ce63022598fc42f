"""Request and response shapes of the protocol API (the OpenAPI spec comes from these)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from server.http.parsing import RequestModel
from server.records.content import ProtocolContent


class DraftIn(ProtocolContent):
    """The whole draft, every autosave. `version` is the draft version this edit started from (or send it
    as `If-Match`); leave it out only for the very first save."""

    version: int | None = Field(None, ge=0)


class AmendmentIn(RequestModel):
    reason: str = Field(min_length=3, max_length=1000, description="Why the signed protocol is corrected")


class PrepareIn(RequestModel):
    language: Literal["ru", "en"] = "ru"


class SignIn(RequestModel):
    document_id: uuid.UUID = Field(description="The PDF from `prepare`: exactly what is signed")
    signature_cms_base64: str | None = Field(
        None, max_length=400_000,
        description="A detached CMS signature over the PDF by the physician's certificate (DER, base64); "
                    "leave out to sign with your signed-in session")


class DraftOut(BaseModel):
    version: int = Field(description="Send back as `version` or `If-Match` with the next save")
    content: ProtocolContent
    amendment_reason: str | None
    updated_at: dt.datetime | None
    problems: list[dict[str, str]] = Field(description="What still stops signing (field, type, message)")


class VersionOut(BaseModel):
    id: uuid.UUID
    version: int
    signed_at: dt.datetime
    level: str = Field(description="`enhanced_qualified`, `enhanced_unqualified` or `server_session`")
    pdf_sha256: str
    pdf_size: int
    language: str
    amendment_reason: str | None
    content: ProtocolContent
    evidence: dict[str, Any]
    seal_key_id: str
    pdf_url: str
    verification_url: str


class ProtocolOut(BaseModel):
    consultation_id: uuid.UUID
    kind: str
    status: str
    draft: DraftOut | None = Field(description="The open draft; only its author sees it")
    versions: list[VersionOut]


class DocumentOut(BaseModel):
    id: uuid.UUID
    version: int
    draft_version: int
    language: str
    sha256: str
    size: int
    pdf_url: str


class CheckOut(BaseModel):
    name: str
    ok: bool
    detail: str


class VerificationOut(BaseModel):
    version_id: uuid.UUID
    ok: bool
    checks: list[CheckOut]
