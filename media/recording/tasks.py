"""Celery adapters: finalise a stopped recording (acks late, retried, idempotent), sweep for any left over,
and erase those past their retention (daily)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from media.recording import retention, services
from server.celery_app import celery_app
from server.db.base import utcnow
from server.db.runner import run_in_session
from server.keyring import load_key_material, load_seal_keys
from server.settings import Settings


async def _finalise(session: AsyncSession, settings: Settings, recording_id: str) -> str | None:
    result = await services.finalise_recording(
        session, recording_id=uuid.UUID(recording_id), keys=load_key_material(settings),
        seal_keys=load_seal_keys(settings), storage=services.storage_for(settings), now=utcnow(),
        grace=dt.timedelta(seconds=settings.recording_finalise_grace_seconds))
    return None if result is None else result.state


async def _pending(session: AsyncSession, settings: Settings) -> list[uuid.UUID]:
    return await services.pending(session, now=utcnow())


@celery_app.task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(Exception,), max_retries=8,
                 retry_backoff=5, retry_backoff_max=300)
def finalise_recording(recording_id: str) -> str | None:
    """Verify, remux and seal one recording; safe to run again (a worker killed half-way, a duplicate)."""
    return run_in_session(lambda session, settings: _finalise(session, settings, recording_id))


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def sweep_recordings() -> int:
    """Queue every stopped recording that is not finalised yet (its task was lost, or the broker was down)."""
    ids = run_in_session(_pending)
    for recording_id in ids:
        finalise_recording.delay(str(recording_id))
    return len(ids)


async def _purge(session: AsyncSession, settings: Settings) -> list[uuid.UUID]:
    return await retention.purge_expired(session, storage=services.storage_for(settings), settings=settings,
                                         now=utcnow())


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def purge_recordings() -> int:
    """Crypto-erase recordings past their retention and not on legal hold (daily); running twice erases nothing."""
    return len(run_in_session(_purge))
