"""A Celery worker killed (SIGKILL) while it finalises a recording: the task runs again on a new worker and the
result is the one a single uninterrupted run gives, file for file (finalisation is idempotent)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from media.recording import services
from media.recording.finalise import finalise
from media.recording.models import FINAL_STATES, Recording, RecordingOutput, RecordingState
from media.recording.queue import FINALISE_TASK
from server import keys
from server.celery_app import create_celery
from server.db.base import utcnow
from server.db.engine import transaction
from server.settings import Settings
from tests.recording_helpers import write_recording
from tests.scheduling_helpers import booked_clinic
from tests.services import server_env, server_process

pytestmark = pytest.mark.slow

SWEEP_TASK = "media.recording.tasks.sweep_recordings"
SECONDS = 600.0  # long enough that finalising takes a while: the worker dies in the middle of it


def _env(settings: Settings) -> dict[str, str]:
    return server_env(TELEMED_ENV="test", TELEMED_DATA_DIR=settings.data_dir,
                      TELEMED_DATABASE_URL=settings.resolved_database_url,
                      TELEMED_BROKER_URL=settings.resolved_broker_url)


def _send(settings: Settings, task: str, *args: str) -> None:
    celery = create_celery(settings)
    try:
        celery.send_task(task, args=list(args))
    finally:
        celery.close()


async def _row(client: Any, recording_id: str) -> tuple[Recording, list[RecordingOutput]]:
    async with client.app[keys.read_sessions]() as session:
        recording = await session.get(Recording, uuid.UUID(recording_id), populate_existing=True)
        assert recording is not None
        outputs = (await session.scalars(select(RecordingOutput).where(
            RecordingOutput.recording_id == recording.id).order_by(RecordingOutput.participant))).all()
        return recording, list(outputs)


async def test_a_worker_killed_while_finalising_leaves_it_to_the_next_run_with_the_same_result(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    settings = client.app[keys.settings]
    async with transaction(client.app[keys.sessions]) as session:
        spec = await services.start(session, consultation_id=uuid.UUID(clinic["consultation"]),
                                    keys=client.app[keys.key_material], settings=settings, now=utcnow())
    await asyncio.to_thread(write_recording, services.storage_for(settings), spec, SECONDS)
    async with transaction(client.app[keys.sessions]) as session:
        await services.stopped(session, recording_id=uuid.UUID(spec.recording_id), reason="ended", now=utcnow())

    with server_process("worker", "--no-beat", env=_env(settings), cwd=tmp_path) as first:
        first.wait_for_output(" ready.", timeout=60)
        await asyncio.to_thread(_send, settings, FINALISE_TASK, spec.recording_id)
        await asyncio.to_thread(first.wait_for_output, f"{FINALISE_TASK}[", timeout=60)  # received: at work
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    recording, outputs = await _row(client, spec.recording_id)
    assert recording.state is RecordingState.stopped, "the worker finished before it was killed: make SECONDS longer"
    assert outputs == []

    async with transaction(client.app[keys.sessions]) as session:  # as if the sweep's wait had passed
        await session.execute(update(Recording).where(Recording.id == uuid.UUID(spec.recording_id))
                              .values(stopped_at=utcnow() - services.SWEEP_AFTER - dt.timedelta(seconds=1)))
    with server_process("worker", "--no-beat", env=_env(settings), cwd=tmp_path) as second:
        second.wait_for_output(" ready.", timeout=60)
        await asyncio.to_thread(_send, settings, SWEEP_TASK)  # what beat runs every minute: queues it again
        deadline = time.monotonic() + 120
        while (recording := (await _row(client, spec.recording_id))[0]).state not in FINAL_STATES:
            assert time.monotonic() < deadline, second.describe()
            await asyncio.sleep(0.5)
    recording, outputs = await _row(client, spec.recording_id)
    assert recording.state is RecordingState.complete, recording.problems

    # The same as one uninterrupted run: every file and the sealed manifest.
    again = await asyncio.to_thread(finalise, services.storage_for(settings), spec.recording_id, spec.data_key)
    assert [(o.participant, o.sha256, o.size, o.media_sha256) for o in outputs] == \
        sorted((o.participant, o.sha256, o.size, o.media_sha256) for o in again.outputs)
    sealed = json.loads(recording.manifest or "{}")
    sealed.pop("consultation")
    assert sealed == json.loads(json.dumps(again.manifest(spec.recording_id)))
