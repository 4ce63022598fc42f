"""Calls in a row leave nothing behind: asyncio tasks, threads and file descriptors return to where they were."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import keys
from server.scheduling.models import ConsultationStatus
from tests.consent_helpers import sign_consents
from tests.factories import Account, register_patient
from tests.integration.test_media_passthrough import _until
from tests.integration.test_signaling_call import (
    admit,
    check_in,
    connect_media,
    join,
    keep_ice_on_loopback,
    status_of,
    stop_media,
)
from tests.scheduling_helpers import benign_answers, booked_clinic, booking, free_slot, physician_on_duty

pytestmark = pytest.mark.slow

# 20 in a row, after one to warm up (imports, the database pool, the default executor); ~1 s each. Each call is
# a consultation in the next 5-minute slot, so at most 23 (TELEMED_TEST_LEAK_CALLS changes the count).
CALLS = int(os.environ.get("TELEMED_TEST_LEAK_CALLS", "20"))


def _snapshot() -> dict[str, Counter[str]]:
    tasks = Counter(_task_kind(task) for task in asyncio.all_tasks())
    threads = Counter(re.sub(r"\d+", "#", thread.name) for thread in threading.enumerate())
    return {"tasks": tasks, "threads": threads, "fds": Counter({"fds": len(os.listdir("/proc/self/fd"))})}


def _task_kind(task: asyncio.Task[Any]) -> str:
    coroutine = task.get_coro()
    return getattr(coroutine, "__qualname__", type(coroutine).__name__)


def _grown(now: dict[str, Counter[str]], before: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    return {kind: now[kind] - before[kind] for kind in now if now[kind] - before[kind]}


async def _call(client: TestClient, consultation: str, doctor: Account, patient: Account) -> None:
    """One whole call: both join, video and sound both ways, the physician ends it."""
    doctor_socket = await join(client, doctor, consultation)
    patient_socket = await join(client, patient, consultation)
    a = await connect_media(doctor_socket, shade=90, pitch=330.0)
    b = await connect_media(patient_socket, shade=170, pitch=440.0)
    try:
        await _until(lambda: all(len(c.received["video"]) >= 5 and len(c.received["audio"]) >= 10 for c in (a, b)),
                     "media both ways")
        await doctor_socket.send({"type": "end"})
        assert await doctor_socket.closed() == 1000
        assert await patient_socket.closed() == 1000
    finally:
        await stop_media(a)
        await stop_media(b)
    registry = client.app[keys.calls]
    await _until(lambda: registry.rooms == () and registry.engine.calls == 0,  # type: ignore[attr-defined]  # in-process
                 "the room and its peers to close")
    assert await status_of(client, consultation) is ConsultationStatus.completed


async def test_signaling_calls_in_a_row_leave_no_tasks_threads_or_fds(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, checkin_opens_minutes=120,
                                 join_opens_minutes=120)
    client = clinic["client"]
    await check_in(clinic)
    await admit(clinic)
    await _call(client, clinic["consultation"], clinic["doctor"], clinic["patient"])

    # One physician with 5-minute slots and one patient: a consultation after the other, all open for check-in.
    doctor, physician_id = await physician_on_duty(client, slot_minutes=5)
    patient = await register_patient(client, full_name="Ирина Повторная")
    await sign_consents(client, patient)
    before = _snapshot()
    for _ in range(CALLS):
        starts_at = await free_slot(client, patient, physician_id)
        made = await client.post("/api/v1/consultations", headers=patient.auth, json=booking(
            physician_id, starts_at, benign_answers(clinic["catalogue"]["respiratory"])))
        assert made.status == 201, await made.text()
        consultation = (await made.json())["id"]
        await check_in(clinic, patient, consultation)
        await admit(clinic, consultation, doctor)
        await _call(client, consultation, doctor, patient)
        assert client.app[keys.calls].room(uuid.UUID(consultation)) is None

    await _until(lambda: not _grown(_snapshot(), before), "tasks, threads and descriptors to return to where they were")
