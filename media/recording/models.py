"""The recordings' tables: one row per recording (a call's span with recording on) and one per finished WebM.

Media lives in the store, sealed; the database keeps what is needed to find, verify and open it: the data key
wrapped by the master key (with the master key's id), the state, and the clinic-sealed manifest listing every
segment's and file's SHA-256. Erasing a recording destroys `wrapped_key`: the files left are noise.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class RecordingState(StrEnum):
    recording = "recording"  # segments being written
    stopped = "stopped"  # stopped (cleanly, or found open after a crash): waiting to be finalised
    complete = "complete"
    partial = "partial"  # cut off by a crash: the segments being written are lost, the gap is listed
    damaged = "damaged"  # something did not verify: `problems` names it
    erased = "erased"  # retention expired: the data key is destroyed


FINAL_STATES = frozenset({RecordingState.complete, RecordingState.partial, RecordingState.damaged})


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="RESTRICT"),
                                                       index=True)
    state: Mapped[RecordingState] = mapped_column(
        Enum(RecordingState, native_enum=False, length=16, validate_strings=True), index=True)
    node: Mapped[str] = mapped_column(String(64))  # the web node whose media recorded it (recovery after a crash)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    key_id: Mapped[str] = mapped_column(String(32))  # the master key that wrapped it
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    stop_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    finalised_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    gaps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    origin: Mapped[float | None] = mapped_column(default=None)  # the timeline's zero (Unix seconds)
    manifest: Mapped[str | None] = mapped_column(Text, default=None)  # canonical JSON, as sealed
    manifest_seal: Mapped[str | None] = mapped_column(String(128), default=None)
    seal_key_id: Mapped[str | None] = mapped_column(String(64), default=None)
    legal_hold: Mapped[bool] = mapped_column(default=False)
    erased_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class RecordingOutput(Base):
    """One participant's playable WebM, sealed in the store."""

    __tablename__ = "recording_outputs"
    __table_args__ = (UniqueConstraint("recording_id", "participant"),)

    id: Mapped[uuid_pk]
    recording_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    participant: Mapped[str] = mapped_column(String(16))  # the role: physician, patient, guest
    storage_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))  # of the sealed file, as stored
    size: Mapped[int]  # sealed bytes
    plaintext_size: Mapped[int]
    media_sha256: Mapped[str] = mapped_column(String(64))  # of the WebM as played (what a download can check)
    media_sha1: Mapped[str] = mapped_column(String(28))  # the same, as FHIR's Attachment.hash wants it (base64)
    duration_ms: Mapped[int]
    video_frames: Mapped[int]
    audio_frames: Mapped[int]
    codecs: Mapped[str] = mapped_column(String(32))
