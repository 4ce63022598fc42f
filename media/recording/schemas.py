"""Request and response models of the recordings API (the OpenAPI spec is built from these)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PlaybackQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    participant: Literal["physician", "patient", "guest"]
    reason: str | None = Field(default=None, min_length=3, max_length=200,
                               description="Why the recording is opened: required of administrators, audited")


class ParticipantMediaOut(BaseModel):
    participant: str
    sha256: str = Field(description="SHA-256 of the sealed (encrypted) file, as the manifest lists it")
    size: int = Field(description="Bytes of the sealed file")
    media_size: int = Field(description="Bytes of the WebM served")
    media_sha256: str = Field(description="SHA-256 of the WebM served: what a downloaded copy can be checked against")
    duration_ms: int
    codecs: list[str]
    media_url: str


class GapOut(BaseModel):
    participant: str
    start_ms: int
    end_ms: int | None = Field(description="None: the recording was cut off (a crash) and did not resume")
    reason: str


class RecordingOut(BaseModel):
    id: uuid.UUID
    consultation_id: uuid.UUID
    state: Literal["recording", "stopped", "complete", "partial", "damaged", "erased"]
    started_at: dt.datetime
    stopped_at: dt.datetime | None
    stop_reason: str | None
    finalised_at: dt.datetime | None
    duration_ms: int | None
    origin: float | None = Field(description="The shared timeline's zero, in Unix seconds")
    problems: list[str]
    gaps: list[GapOut]
    participants: list[ParticipantMediaOut]
    manifest_sealed: bool


class RecordingList(BaseModel):
    items: list[RecordingOut]


class LegalHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    hold: bool = Field(description="true: retention never erases the recording; false: release the hold")
    reason: str = Field(min_length=3, max_length=200,
                        description="Why (a court order, a complaint, a case number): kept in the audit log")


class LegalHoldOut(BaseModel):
    id: uuid.UUID
    state: Literal["recording", "stopped", "complete", "partial", "damaged", "erased"]
    legal_hold: bool
