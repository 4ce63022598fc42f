"""Calls through the real app with TELEMED_MEDIA_WORKERS=2: the peers live in two spawned worker processes.

As in test_signaling_call, media stays on 127.0.0.1: the test's clients through `keep_ice_on_loopback`, the
workers because TELEMED_ENV=test makes the engine start them with `--loopback-only` (media.loopback.pin in the
worker: a monkeypatch here would not reach another process), and `connect_media` checks that every candidate
of every SDP is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from media import passthrough
from media.worker_client import MediaWorker
from media.workers import WorkerMediaCall, WorkerMediaEngine
from server import keys
from server.scheduling.models import ConsultationStatus
from tests.integration.test_media_passthrough import _assert_forwarded_unchanged, _until
from tests.integration.test_signaling_call import (
    another_consultation,
    connect_media,
    join,
    joined_pair,
    keep_ice_on_loopback,
    live_clinic,
    physician_ends,
    status_of,
    stop_media,
)
from tests.integration.test_signaling_leaks import _call, _grown, _snapshot

pytestmark = pytest.mark.slow

WORKERS = {"media_workers": 2}
OPEN_EARLY = {"checkin_opens_minutes": 120, "join_opens_minutes": 120}


@pytest.fixture(autouse=True)
def clients_receive_encoded_frames() -> Iterator[None]:
    """The test's aiortc clients hand on encoded frames (to compare bytes); the app installs nothing here now."""
    installed = passthrough.is_installed()
    passthrough.install()
    yield
    if not installed:
        passthrough.uninstall()


def engine_of(client: TestClient) -> WorkerMediaEngine:
    engine = client.app[keys.calls].engine
    assert isinstance(engine, WorkerMediaEngine)
    return engine


def media_of(client: TestClient, consultation: str) -> WorkerMediaCall:
    room = client.app[keys.calls].room(uuid.UUID(consultation))
    assert room is not None
    assert isinstance(room.media, WorkerMediaCall)
    return room.media


async def worker_stats(engine: WorkerMediaEngine) -> dict[str, dict[str, Any]]:
    return {stats["worker_id"]: stats for stats in await engine.stats()}


async def test_media_workers_carry_a_call_byte_for_byte_in_another_process(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch, **WORKERS)
    client, consultation = clinic["client"], clinic["consultation"]
    engine = engine_of(client)
    assert [worker.live for worker in engine.workers] == [True, True]
    media = media_of(client, consultation)
    assert media.worker is not None
    assert media.worker.pid not in (None, os.getpid())

    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0)
    try:
        await _until(lambda: all(len(c.received["video"]) >= 20 and len(c.received["audio"]) >= 40 for c in (a, b)),
                     "20 video and 40 audio frames at each client")
        stats = await worker_stats(engine)
        assert stats[media.worker.worker_id]["peers"] == 2
        await physician_ends(doctor, patient)
    finally:
        await stop_media(a)
        await stop_media(b)
    assert await status_of(client, consultation) is ConsultationStatus.completed
    registry = client.app[keys.calls]
    await _until(lambda: registry.rooms == () and engine.calls == 0, "the room and its call to close")
    assert {(s["calls"], s["peers"]) for s in (await worker_stats(engine)).values()} == {(0, 0)}

    for sender, receiver in ((a, b), (b, a)):
        _assert_forwarded_unchanged(receiver.received["video"], sender.video.sent, minimum=20)
        _assert_forwarded_unchanged(receiver.received["audio"], sender.audio.sent, minimum=40)
    assert b.received["video"][0].keyframe, "video starts with a keyframe: the relay waits for one"


async def test_media_workers_place_two_calls_on_different_workers(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, **WORKERS, **OPEN_EARLY)
    client = clinic["client"]
    second_patient, second = await another_consultation(clinic, "Анна Вторая")
    sockets = [await join(client, clinic["doctor"], clinic["consultation"]),
               await join(client, clinic["patient"], clinic["consultation"]),
               await join(client, clinic["doctor"], second),
               await join(client, second_patient, second)]

    first_worker, second_worker = media_of(client, clinic["consultation"]).worker, media_of(client, second).worker
    assert first_worker is not None
    assert second_worker is not None
    assert first_worker is not second_worker
    assert first_worker.pid != second_worker.pid
    stats = await worker_stats(engine_of(client))
    assert {worker_id: (s["calls"], s["peers"]) for worker_id, s in stats.items()} == {"0": (1, 2), "1": (1, 2)}
    for socket in sockets:
        await socket.close()


async def test_media_workers_a_killed_worker_fails_its_calls_over_and_the_participants_rejoin(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch, **WORKERS)
    client, consultation = clinic["client"], clinic["consultation"]
    engine = engine_of(client)
    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0)
    clients = [a, b]
    try:
        await _until(lambda: len(a.received["video"]) >= 5 and len(b.received["video"]) >= 5, "video both ways")
        dead = media_of(client, consultation).worker
        assert dead is not None
        dead_pid, slot = dead.pid, engine.workers.index(dead)
        dead.kill()  # as the kernel's OOM killer or a segfault in a codec would

        for socket in (doctor, patient):
            assert (await socket.expect("error"))["code"] == "media_failed"
            assert await socket.closed() == 4410
        await _until(lambda: engine.workers[slot] is not dead and engine.workers[slot].live, "the worker's restart")
        assert engine.workers[slot].pid != dead_pid
        assert dead.process is not None
        assert dead.process.returncode is not None  # reaped, no zombie

        doctor = await join(client, clinic["doctor"], consultation)
        patient = await join(client, clinic["patient"], consultation)
        a2 = await connect_media(doctor, shade=60, pitch=300.0)
        b2 = await connect_media(patient, shade=200, pitch=550.0)
        clients += [a2, b2]
        await _until(lambda: all(len(c.received["video"]) >= 10 and len(c.received["audio"]) >= 20 for c in (a2, b2)),
                     "media both ways after the rejoin")
        rehomed = media_of(client, consultation).worker
        assert rehomed is not None
        assert rehomed.live
        assert rehomed.pid != dead_pid
        assert await status_of(client, consultation) is ConsultationStatus.in_call
        await doctor.send({"type": "end"})
        assert await doctor.closed() == 1000
        assert await patient.closed() == 1000
    finally:
        for media in clients:
            await stop_media(media)
    for sender, receiver in ((a2, b2), (b2, a2)):
        _assert_forwarded_unchanged(receiver.received["video"], sender.video.sent, minimum=10)
        _assert_forwarded_unchanged(receiver.received["audio"], sender.audio.sent, minimum=20)


def _channel_inodes(engine: WorkerMediaEngine) -> set[str]:
    """The web process's ends of the workers' channels, as /proc/self/fd names them."""
    inodes = set()
    for worker in engine.workers:
        link = worker._link
        assert link is not None
        inodes.add(f"socket:[{os.fstat(link.writer.get_extra_info('socket').fileno()).st_ino}]")
    return inodes


def _open_descriptors() -> set[str]:
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own descriptor)
            names.add(os.readlink(f"/proc/self/fd/{fd}"))
    return names


def _process_exists(pid: int | None) -> bool:
    return pid is not None and os.path.exists(f"/proc/{pid}")


def _leak_figures(stats: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {worker_id: (s["calls"], s["peers"], s["tasks"], s["threads"], s["fds"]) for worker_id, s in stats.items()}


async def test_media_workers_calls_and_shutdown_leave_no_processes_tasks_threads_or_fds(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, **WORKERS, **OPEN_EARLY)
    client = clinic["client"]
    engine = engine_of(client)
    await _call(client, clinic["consultation"], clinic["doctor"], clinic["patient"])  # warm-up, on worker 0
    second_patient, second = await another_consultation(clinic, "Анна Вторая")
    third_patient, third = await another_consultation(clinic, "Ирина Третья")
    before, workers_before = _snapshot(), _leak_figures(await worker_stats(engine))

    # Calls in a row on both workers: nothing grows in the web process or in either worker.
    await _call(client, second, clinic["doctor"], second_patient)
    await _call(client, third, clinic["doctor"], third_patient)
    await _until(lambda: not _grown(_snapshot(), before), "the web process's tasks, threads and fds to settle")
    deadline = asyncio.get_running_loop().time() + 10
    while (workers_now := _leak_figures(await worker_stats(engine))) != workers_before:
        assert asyncio.get_running_loop().time() < deadline, f"workers grew: {workers_before} -> {workers_now}"
        await asyncio.sleep(0.1)

    # Shutdown: every worker exits by itself (0: it closed its peers at end of stream), nothing left behind.
    workers: list[MediaWorker] = list(engine.workers)
    channels = _channel_inodes(engine)
    assert channels <= _open_descriptors()
    await client.close()
    for worker in workers:
        assert worker.process is not None
        assert worker.process.returncode == 0
        assert not _process_exists(worker.pid)
    assert not channels & _open_descriptors()
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("media-worker")]
