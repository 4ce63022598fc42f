"""Recordings in the database: started with the call, stopped, recovered after a crash, finalised, played back.

The live side (media.recording.capture) needs only a RecordingSpec; everything that touches the database, the
master key or the clinic's seal is here, in the web node or the Celery worker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import seal as clinic_seal
from media.recording import encryption
from media.recording.capture import RecordingSpec, end_key
from media.recording.finalise import Finalised, finalise
from media.recording.models import FINAL_STATES, Recording, RecordingOutput, RecordingState
from media.recording.storage import RecordingStorage, StorageLocation, StoredFileMissing
from qa_audit.models import Review
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role
from server.http.problems import NotFound
from server.keyring import KeyMaterial, SealKeys
from server.people.models import Physician, QaExpert
from server.scheduling.models import Consultation
from server.scheduling.services import Viewer
from server.settings import Settings

log = structlog.get_logger("telemed.media.recording")
CHUNK_BYTES = encryption.CHUNK_BYTES


def storage_location(settings: Settings) -> StorageLocation:
    """The clinic's store: an S3-compatible bucket if one is configured, else the local folder."""
    secret = settings.recordings_s3_secret_access_key
    return StorageLocation(
        folder=str(settings.resolved_recordings_dir), bucket=settings.recordings_s3_bucket,
        prefix=settings.recordings_s3_prefix, endpoint_url=settings.recordings_s3_endpoint_url,
        region=settings.recordings_s3_region, access_key_id=settings.recordings_s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None)


def storage_for(settings: Settings) -> RecordingStorage:
    """The store, opened once per location (an object store's client is costly to make, and thread-safe)."""
    return _opened(storage_location(settings))


@functools.lru_cache(maxsize=8)
def _opened(location: StorageLocation) -> RecordingStorage:
    return location.open()


async def start(session: AsyncSession, *, consultation_id: uuid.UUID, keys: KeyMaterial, settings: Settings,
                now: dt.datetime) -> RecordingSpec:
    """A new recording of the consultation's call, with its own data key (stored only wrapped)."""
    data_key = encryption.new_data_key()
    recording = Recording(consultation_id=consultation_id, state=RecordingState.recording,
                          node=settings.resolved_node_id, wrapped_key=encryption.wrap(data_key, keys.master_key),
                          key_id=keys.master_key_id, started_at=now, problems=[], gaps=[])
    session.add(recording)
    await session.flush()
    await audit.record(session, ctx=audit.SYSTEM, action="recording.started", object_type="recording",
                       object_id=recording.id, detail={"consultation_id": str(consultation_id)}, now=now)
    return RecordingSpec(str(recording.id), data_key, settings.recording_segment_seconds)


async def stopped(session: AsyncSession, *, recording_id: uuid.UUID, reason: str, now: dt.datetime) -> None:
    """The recording stopped (end of call, consent withdrawn, paused): it waits to be finalised."""
    recording = await session.get(Recording, recording_id, with_for_update=True)
    if recording is None or recording.state is not RecordingState.recording:
        return
    recording.state, recording.stopped_at, recording.stop_reason = RecordingState.stopped, now, reason[:64]
    await audit.record(session, ctx=audit.SYSTEM, action="recording.stopped", object_type="recording",
                       object_id=recording.id, detail={"reason": reason}, now=now)


async def recover(session: AsyncSession, *, settings: Settings, now: dt.datetime) -> list[uuid.UUID]:
    """Recordings this node left open (it crashed or was killed mid-call): stopped, to be finalised (partial)."""
    open_ones = (await session.scalars(select(Recording).where(
        Recording.state == RecordingState.recording, Recording.node == settings.resolved_node_id))).all()
    for recording in open_ones:
        recording.state, recording.stopped_at = RecordingState.stopped, now
        recording.stop_reason = "node_restarted"
        await audit.record(session, ctx=audit.SYSTEM, action="recording.recovered", object_type="recording",
                           object_id=recording.id, now=now)
    return [recording.id for recording in open_ones]


async def pending(session: AsyncSession, *, now: dt.datetime) -> list[uuid.UUID]:
    """Recordings to finalise that no task may be on: stopped a while ago (their task was lost, or the broker was
    down), and ones still `recording` long after any consultation ends (their node never came back), which are
    stopped here first."""
    stale = (await session.scalars(select(Recording).where(
        Recording.state == RecordingState.recording, Recording.started_at < now - STALE_AFTER))).all()
    for recording in stale:
        recording.state, recording.stopped_at, recording.stop_reason = RecordingState.stopped, now, "stale"
        await audit.record(session, ctx=audit.SYSTEM, action="recording.recovered", object_type="recording",
                           object_id=recording.id, detail={"reason": "stale"}, now=now)
    return list((await session.scalars(select(Recording.id).where(
        Recording.state == RecordingState.stopped, Recording.stopped_at < now - SWEEP_AFTER))).all())


def _has_end_marker(storage: RecordingStorage, recording_id: str) -> bool:
    try:
        storage.size(end_key(recording_id))
    except StoredFileMissing:
        return False
    return True


def data_key_of(recording: Recording, keys: KeyMaterial) -> bytes:
    """The recording's data key, unwrapped by the master key that wrapped it: the current one or, until
    `recordings rewrap` has run after a rotation, a retired one in TELEMED_MASTER_PREVIOUS_KEYS."""
    if recording.wrapped_key is None:
        raise NotFound()  # erased
    master = keys.master_key_for(recording.key_id)
    if master is None:
        raise encryption.Tampered(f"wrapped by master key {recording.key_id}, neither the configured one "
                                  "nor one in TELEMED_MASTER_PREVIOUS_KEYS")
    return encryption.unwrap(recording.wrapped_key, master)


class NotReady(Exception):
    """The recorder may still be writing (no end marker yet, stopped moments ago): try again shortly."""


#: Stops after which the recorder writes its end marker; without it, something removed it or the writing stalled.
CLEAN_STOPS = frozenset({"ended", "paused", "consent_withdrawn", "interrupted", "call_closed", "replaced",
                         "superseded"})
#: Recordings still `recording` this long after they started belong to a node that never came back.
STALE_AFTER = dt.timedelta(hours=6)
#: The sweep leaves recordings stopped this recently to the task queued when they stopped.
SWEEP_AFTER = dt.timedelta(minutes=5)


async def finalise_recording(session: AsyncSession, *, recording_id: uuid.UUID, keys: KeyMaterial,
                             seal_keys: SealKeys, storage: RecordingStorage, now: dt.datetime,
                             grace: dt.timedelta = dt.timedelta(seconds=30)) -> Finalised | None:
    """Verify and finish a stopped recording (see media.recording.finalise); None if there is nothing to do.

    Idempotent: a recording already final is left alone, and a run interrupted half-way (the worker died)
    simply runs again, producing the same files. Without an end marker it waits `grace` after the stop
    (NotReady): a media worker may still be flushing. After that, a recording stopped cleanly but without its
    marker is damaged (the marker was removed, or the writing failed); one whose recorder died is partial.
    """
    recording = await session.get(Recording, recording_id, with_for_update=True)
    if recording is None or recording.state in FINAL_STATES or recording.state is RecordingState.erased:
        return None
    if recording.state is RecordingState.recording:
        return None  # still being written: the end of the call (or recovery) queues it again
    data_key = data_key_of(recording, keys)
    ended = await asyncio.to_thread(_has_end_marker, storage, str(recording.id))
    if not ended and recording.stopped_at is not None and now - recording.stopped_at < grace:
        raise NotReady(str(recording.id))
    result = await asyncio.to_thread(finalise, storage, str(recording.id), data_key)
    if not ended and recording.stop_reason in CLEAN_STOPS:
        result.problems.append("the end marker is missing though the recording was stopped cleanly")
        result.state = "damaged"
    manifest = dict(result.manifest(str(recording.id)), consultation=str(recording.consultation_id))
    sealed = clinic_seal.seal(seal_keys, manifest)
    recording.state = RecordingState(result.state)
    recording.finalised_at, recording.duration_ms = now, result.duration_ms
    recording.problems, recording.gaps, recording.origin = result.problems + [f"lost: {s}" for s in result.lost], \
        result.gaps, result.origin
    recording.manifest, recording.manifest_seal, recording.seal_key_id = sealed.payload, sealed.signature, \
        sealed.key_id
    await session.execute(delete(RecordingOutput).where(RecordingOutput.recording_id == recording.id))
    for output in result.outputs:
        session.add(RecordingOutput(recording_id=recording.id, participant=output.participant,
                                    storage_key=output.key, sha256=output.sha256, size=output.size,
                                    plaintext_size=output.plaintext_size, media_sha256=output.media_sha256,
                                    media_sha1=output.media_sha1, duration_ms=output.duration_ms,
                                    video_frames=output.video_frames, audio_frames=output.audio_frames,
                                    codecs=",".join(output.codecs)))
    await audit.record(session, ctx=audit.SYSTEM, action="recording.finalised", object_type="recording",
                       object_id=recording.id, now=now,
                       detail={"state": result.state, "problems": len(result.problems), "lost": len(result.lost)})
    log.info("recording_finalised", recording_id=str(recording.id), state=result.state,
             duration_ms=result.duration_ms, problems=len(result.problems))
    return result


def check_manifest(recording: Recording, seal_keys: SealKeys) -> None:
    """Raises consent.seal.SealProblem unless the stored manifest is the one the clinic sealed."""
    if recording.manifest is None or recording.manifest_seal is None or recording.seal_key_id is None:
        raise clinic_seal.SealProblem("the recording has no sealed manifest yet")
    clinic_seal.check(seal_keys, payload=recording.manifest, signature=recording.manifest_seal,
                      key_id=recording.seal_key_id)


@dataclass(frozen=True)
class Playback:
    recording: Recording
    output: RecordingOutput
    reader: encryption.RangeReader
    storage: RecordingStorage


class ReasonRequired(ValueError):
    """An administrator must say why they open a recording."""


async def may_view(session: AsyncSession, consultation_id: uuid.UUID, viewer: Viewer, *, settings: Settings) -> bool:
    """The consultation's physician; the QA expert assigned to it; an admin (with a reason, checked by the
    caller); the patient if the clinic allows it. Everybody else: as if it did not exist."""
    consultation = await session.get(Consultation, consultation_id)
    if consultation is None:
        return False
    if viewer.role is Role.physician:
        physician = await session.get(Physician, consultation.physician_id)
        return physician is not None and physician.user_id == viewer.user_id
    if viewer.role is Role.patient:
        return settings.recording_patient_playback and viewer.patient_id == consultation.patient_id
    if viewer.role is Role.admin:
        return True
    if viewer.role is Role.qa_expert:
        return await qa_assigned(session, user_id=viewer.user_id, consultation_id=consultation.id)
    return False


async def qa_assigned(session: AsyncSession, *, user_id: uuid.UUID, consultation_id: uuid.UUID) -> bool:
    """Whether a QA review of this consultation is assigned to this expert (open or done: they may replay what
    they scored)."""
    return await session.scalar(select(Review.id).join(QaExpert, QaExpert.id == Review.expert_id).where(
        QaExpert.user_id == user_id, Review.consultation_id == consultation_id).limit(1)) is not None


async def open_playback(session: AsyncSession, *, recording_id: uuid.UUID, participant: str, viewer: Viewer,
                        reason: str | None, keys: KeyMaterial, storage: RecordingStorage,
                        settings: Settings) -> Playback:
    recording = await session.get(Recording, recording_id)
    if recording is None or recording.state not in FINAL_STATES or not await may_view(
            session, recording.consultation_id, viewer, settings=settings):
        raise NotFound()
    if viewer.role is Role.admin and not (reason and reason.strip()):
        raise ReasonRequired()
    output = (await session.scalars(select(RecordingOutput).where(
        RecordingOutput.recording_id == recording.id, RecordingOutput.participant == participant))).one_or_none()
    if output is None:
        raise NotFound()
    data_key = data_key_of(recording, keys)
    head = await asyncio.to_thread(storage.read, output.storage_key, 0, 4096)
    header = encryption.read_header(io.BytesIO(head))
    if (header.fields.get("recording"), header.fields.get("track")) != (str(recording.id), f"output.{participant}"):
        raise encryption.Tampered(f"the stored file is not {participant}'s recording {recording.id}")
    return Playback(recording, output, encryption.RangeReader(header, data_key, output.size), storage)


async def audit_playback(session: AsyncSession, playback: Playback, *, ctx: AuditContext, viewer: Viewer,
                         reason: str | None, ranges: list[tuple[int, int]], now: dt.datetime) -> None:
    consultation = await session.get(Consultation, playback.recording.consultation_id)
    detail: dict[str, Any] = {"participant": playback.output.participant,
                              "ranges": [f"{start}-{end}" for start, end in ranges][:16]}
    if reason:
        detail["reason"] = reason[:200]
    await audit.record(session, ctx=ctx, action="recording.played", object_type="recording",
                       object_id=playback.recording.id,
                       subject_patient_id=consultation.patient_id if consultation else None, detail=detail, now=now)


def read_plaintext(playback: Playback, start: int, end: int) -> bytes:
    """Plaintext bytes [start, end] (inclusive), decrypting only the chunks they lie in. Blocking: run in a
    thread."""
    out = bytearray()
    first, last = start // encryption.CHUNK_BYTES, end // encryption.CHUNK_BYTES
    for index in range(first, last + 1):
        offset, length = playback.reader.chunk_span(index)
        chunk = playback.reader.decrypt(index, playback.storage.read(playback.output.storage_key, offset, length))
        base = index * encryption.CHUNK_BYTES
        out += chunk[max(start - base, 0):end - base + 1]
    return bytes(out)
