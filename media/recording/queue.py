"""Handing stopped recordings to the Celery worker for finalisation, from the web node's event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from celery import Celery

from server.keyring import KeyMaterial
from server.settings import Settings

log = structlog.get_logger("telemed.media.recording")
FINALISE_TASK = "media.recording.tasks.finalise_recording"


class FinalisationQueue:
    """Sends `finalise_recording` tasks on the clinic's broker. A send that fails is only logged: the recording
    stays `stopped`, and the worker's periodic sweep (media.recording.tasks.sweep_recordings) queues it."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    async def put(self, recording_id: str) -> None:
        try:  # kombu's transports are blocking: never in the event loop
            await asyncio.to_thread(self._celery.send_task, FINALISE_TASK, args=[recording_id])
        except Exception:
            log.exception("recording_finalisation_not_queued", recording_id=recording_id)


@dataclass(frozen=True)
class Recordings:
    """What a web node needs to record calls: settings (folder, segment length), the keys, the queue."""

    settings: Settings
    keys: KeyMaterial
    queue: FinalisationQueue
