"""Handing stopped recordings to the Celery worker for finalisation, from the web node's event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from celery import Celery

from consent.rules import GatePolicy
from server.keyring import KeyMaterial
from server.settings import Settings

log = structlog.get_logger("telemed.media.recording")
FINALISE_TASK = "media.recording.tasks.finalise_recording"


class FinalisationQueue:
    """Sends `finalise_recording` tasks on the clinic's broker. A send that fails is only logged: the recording
    stays `stopped`, and the worker's periodic sweep (media.recording.tasks.sweep_recordings) queues it."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery
        self._sending: set[asyncio.Task[None]] = set()

    def put(self, recording_id: str) -> None:
        """Queue the task in the background: the call that stopped recording does not wait for the broker."""
        task = asyncio.create_task(self._send(recording_id), name="recording-finalisation-queued")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def drain(self) -> None:
        """Wait for the sends under way (at shutdown, so none is lost)."""
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send(self, recording_id: str) -> None:
        try:  # kombu's transports are blocking: never in the event loop
            await asyncio.to_thread(self._celery.send_task, FINALISE_TASK, args=[recording_id])
        except Exception:
            log.exception("recording_finalisation_not_queued", recording_id=recording_id)


@dataclass(frozen=True)
class Recordings:
    """What a web node needs to record calls: settings (store, segment length), the keys, the queue, and the
    consent rules (checked again as each recording starts)."""

    settings: Settings
    keys: KeyMaterial
    queue: FinalisationQueue
    consent_policy: GatePolicy
