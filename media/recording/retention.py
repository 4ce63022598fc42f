"""How long recordings are kept, legal hold, and crypto-erasure of those past their retention (docs/retention.md).

A recording is erased by destroying its data key (`wrapped_key`): the sealed files left anywhere (the store, a
backup of it) are noise from then on. Its row stays, as the record that it existed and was erased, with its
hashes and the audit entries that say when, why and under which setting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import structlog
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from media.recording.models import FINAL_STATES, Recording, RecordingState
from media.recording.storage import RecordingStorage
from server.audit import services as audit
from server.audit.services import AuditContext
from server.http.problems import Conflict, NotFound
from server.scheduling.models import Consultation
from server.settings import Settings

log = structlog.get_logger("telemed.media.recording")


class RecordingErased(Conflict):
    code, title = "recording_erased", "The recording is erased already"


def retained_since(recording: Recording) -> dt.datetime:
    """When the retention period of a recording starts: its finalisation, or its start if it has none."""
    return recording.finalised_at or recording.started_at


def expired(recording: Recording, now: dt.datetime, days: int) -> bool:
    """Whether the recording is past its retention and may be erased: finished (complete, partial or damaged;
    never one still being written or finalised), not on legal hold, and older than `days` (0: kept forever)."""
    if days <= 0 or recording.legal_hold or recording.state not in FINAL_STATES:
        return False
    return now - retained_since(recording) > dt.timedelta(days=days)


async def expired_recordings(session: AsyncSession, *, days: int, now: dt.datetime,
                             lock: bool = False) -> list[tuple[Recording, uuid.UUID]]:
    """Recordings `expired` says may be erased, oldest first, with their consultation's patient. With `lock`
    the rows stay locked until the transaction ends, so a legal hold or a re-wrap cannot slip in between."""
    if days <= 0:
        return []
    cutoff = now - dt.timedelta(days=days)
    query = (select(Recording, Consultation.patient_id)
             .join(Consultation, Consultation.id == Recording.consultation_id)
             .where(Recording.state.in_(FINAL_STATES), Recording.legal_hold.is_(False),
                    or_(Recording.finalised_at < cutoff,
                        and_(Recording.finalised_at.is_(None), Recording.started_at < cutoff)))
             .order_by(Recording.started_at, Recording.id))
    if lock:
        query = query.with_for_update(of=Recording)
    rows = (await session.execute(query)).all()
    return [(recording, patient_id) for recording, patient_id in rows if expired(recording, now, days)]


async def purge_expired(session: AsyncSession, *, storage: RecordingStorage, settings: Settings, now: dt.datetime,
                        ctx: AuditContext = audit.SYSTEM) -> list[uuid.UUID]:
    """Crypto-erase every recording past TELEMED_RETENTION_RECORDING_DAYS that is not on legal hold; returns
    their ids. Idempotent: an erased recording is not final any more, so a second run finds nothing.

    The database changes (key destroyed, state, audit entries) are made first and the files deleted last: if the
    deletion fails the key is gone anyway and the files are noise; if the commit fails after the deletion, the
    recording is still expired and the next run erases it.
    """
    days = settings.retention_recording_days
    found = await expired_recordings(session, days=days, now=now, lock=True)
    for recording, patient_id in found:
        recording.wrapped_key = None
        recording.state, recording.erased_at = RecordingState.erased, now
        await audit.record(session, ctx=ctx, action="recording.erased", object_type="recording",
                           object_id=recording.id, subject_patient_id=patient_id,
                           detail={"reason": "retention", "days": days}, now=now)
    await session.flush()
    for recording, _patient_id in found:
        try:
            await asyncio.to_thread(storage.delete_prefix, str(recording.id))
        except Exception:  # the key is destroyed: what is left is noise; keep erasing the others
            log.exception("recording_files_not_deleted", recording_id=str(recording.id))
    if found:
        log.info("recordings_erased", count=len(found), days=days)
    return [recording.id for recording, _patient_id in found]


async def set_legal_hold(session: AsyncSession, *, recording_id: uuid.UUID, hold: bool, reason: str,
                         ctx: AuditContext, now: dt.datetime) -> Recording:
    """Put a recording on legal hold (retention never erases it) or release it; audited with the reason, also
    when nothing changes. An erased recording cannot be held: its key is gone."""
    recording = await session.get(Recording, recording_id, with_for_update=True)
    if recording is None:
        raise NotFound()
    if hold and recording.state is RecordingState.erased:
        raise RecordingErased("Its data key is destroyed: there is nothing left to hold")
    changed = recording.legal_hold != hold
    recording.legal_hold = hold
    consultation = await session.get(Consultation, recording.consultation_id)
    await audit.record(session, ctx=ctx,
                       action="recording.legal_hold_set" if hold else "recording.legal_hold_released",
                       object_type="recording", object_id=recording.id,
                       subject_patient_id=consultation.patient_id if consultation else None,
                       detail={"reason": reason, "changed": changed}, now=now)
    return recording
