"""A server killed (SIGKILL) mid-call loses at most the segment each track was writing.

The real server runs as a subprocess (media in its own process, so the kill takes the recorder down with it)
and two aiortc clients hold a call through it on 127.0.0.1. Thirty seconds in, the server is killed. Restarted,
it finds the recording it left open and queues its finalisation; a real Celery worker finalises it as `partial`,
the lost segments named, and both participants' WebMs play.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
import uuid
from pathlib import Path

import aiohttp
import av
import pytest
from sqlalchemy import select

from media.recording import encryption
from media.recording.models import FINAL_STATES, Recording, RecordingOutput, RecordingState
from server.db.engine import create_engine, create_sessionmaker
from server.keyring import load_key_material
from server.settings import Settings
from tests.e2e.conftest import serve_process
from tests.e2e.seeding import DOCTOR_EMAIL, PATIENT_EMAIL, admitted_consultation
from tests.factories import PASSWORD
from tests.integration.test_media_passthrough import _until, passthrough_installed  # noqa: F401  # the fixture
from tests.integration.test_signaling_call import Socket, connect_media, keep_ice_on_loopback, stop_media
from tests.services import free_port, server_env, server_process

pytestmark = pytest.mark.slow

CALL_SECONDS = float(os.environ.get("TELEMED_TEST_CRASH_SECONDS", "30"))
SEGMENT_SECONDS = 10.0
ENV = {"TELEMED_MEDIA_WORKERS": "0", "TELEMED_RECORDING_SEGMENT_SECONDS": str(SEGMENT_SECONDS),
       "TELEMED_RECORDING_FINALISE_GRACE_SECONDS": "2"}  # no media worker outlived the kill: no need to wait long


async def _signed_in(http: aiohttp.ClientSession, base: str, email: str) -> dict[str, str]:
    async with http.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def _joined(http: aiohttp.ClientSession, base: str, auth: dict[str, str], consultation: str) -> Socket:
    async with http.post(f"{base}/api/v1/consultations/{consultation}/join", headers=auth) as response:
        assert response.status == 201, await response.text()
        ticket = (await response.json())["ticket"]
    ws = await http.ws_connect(f"ws{base.removeprefix('http')}/api/v1/signaling", headers={"Origin": base})
    socket = Socket(ws).start()
    await socket.send({"type": "join", "consultation_id": consultation, "ticket": ticket})
    await socket.expect("joined")
    return socket


async def _recording(database_url: str, consultation: str) -> tuple[Recording, list[RecordingOutput]]:
    engine = create_engine(database_url, null_pool=True)
    try:
        async with create_sessionmaker(engine)() as session:
            recording = (await session.scalars(select(Recording).where(
                Recording.consultation_id == uuid.UUID(consultation)))).one()
            outputs = (await session.scalars(select(RecordingOutput).where(
                RecordingOutput.recording_id == recording.id))).all()
            return recording, list(outputs)
    finally:
        await engine.dispose()


@pytest.mark.usefixtures("passthrough_installed")  # the clients see encoded frames
async def test_a_server_killed_mid_call_leaves_a_partial_recording_one_segment_short(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    consultation = await admitted_consultation(database_url, tmp_path / "seed")
    port = free_port()
    clients = []
    with serve_process(tmp_path, database_url, ENV, port=port) as (base, server):
        async with aiohttp.ClientSession() as http:
            doctor = await _joined(http, base, await _signed_in(http, base, DOCTOR_EMAIL), consultation)
            patient = await _joined(http, base, await _signed_in(http, base, PATIENT_EMAIL), consultation)
            clients = [await connect_media(doctor, shade=90, pitch=330.0),
                       await connect_media(patient, shade=170, pitch=440.0)]
            await _until(lambda: all(len(c.received["video"]) >= 5 for c in clients), "media both ways")
            started = time.monotonic()
            await asyncio.sleep(CALL_SECONDS)
            server.send_signal(signal.SIGKILL)  # no shutdown, no flush: the recorder dies mid-segment
            server.wait()
            called = time.monotonic() - started
            for client in clients:
                await stop_media(client)
    recording, _ = await _recording(database_url, consultation)
    assert recording.state is RecordingState.recording  # as the killed server left it

    # Restarted, the server recovers what it left open; a worker finalises it.
    env = server_env(TELEMED_ENV="test", TELEMED_DATA_DIR=tmp_path / "server-var",
                     TELEMED_DATABASE_URL=database_url, **ENV)
    with serve_process(tmp_path, database_url, ENV, port=port, log_name="server-again.log"), \
            server_process("worker", "--no-beat", env=env, cwd=tmp_path) as worker:
        deadline = time.monotonic() + 120
        while (recording := (await _recording(database_url, consultation))[0]).state not in FINAL_STATES:
            assert time.monotonic() < deadline, worker.describe()
            await asyncio.sleep(0.5)
    recording, outputs = await _recording(database_url, consultation)

    assert recording.state is RecordingState.partial, recording.problems
    assert recording.stop_reason == "node_restarted"
    lost = [problem.removeprefix("lost: ") for problem in recording.problems]
    assert all(problem.startswith("lost: ") for problem in recording.problems), recording.problems
    tracks = [name.split("#")[0] for name in lost]
    assert len(tracks) == len(set(tracks)), "more than one segment of a track lost"
    assert any(gap["end_ms"] is None for gap in recording.gaps)  # the cut is marked, not papered over
    data_key = encryption.unwrap(recording.wrapped_key or b"", load_key_material(
        Settings(_env_file=None, data_dir=tmp_path / "server-var")).master_key)  # type: ignore[call-arg]
    assert {o.participant for o in outputs} == {"physician", "patient"}
    for output in outputs:
        assert output.duration_ms >= (called - SEGMENT_SECONDS - 2) * 1000, (output.participant, output.duration_ms)
        sealed = (tmp_path / "server-var" / "recordings" / output.storage_key).read_bytes()
        webm = encryption.open_sealed(sealed, data_key)[1]
        with av.open(io.BytesIO(webm)) as container:
            assert sum(1 for _ in container.decode(video=0)) >= 10 * (called - SEGMENT_SECONDS - 2)  # 15 fps sent
