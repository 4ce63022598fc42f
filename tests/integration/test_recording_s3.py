"""Recordings in an S3-compatible bucket (a real S3 server on 127.0.0.1: moto's): written, verified, finalised,
played back with ranges, cut off by a crash, erased; nothing readable in the bucket."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from media.recording import encryption, services
from media.recording.capture import RecordingSpec
from media.recording.finalise import finalise
from media.recording.models import RecordingState
from media.recording.s3 import S3Storage
from media.recording.storage import PART
from server import keys
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_seal_keys
from tests.integration.test_media_passthrough import _until, passthrough_installed  # noqa: F401  # the fixture
from tests.integration.test_recording_api import recorded_clinic
from tests.integration.test_recording_call import _demux
from tests.integration.test_signaling_call import connect_media, joined_pair, physician_ends, recordings_of, stop_media
from tests.recording_helpers import write_recording
from tests.s3_server import S3Server, s3_server


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def test_a_recording_in_a_bucket_finalises_reads_ranges_and_is_erased(s3: S3Server, tmp_path: Path) -> None:
    storage = s3.location(s3.bucket("recordings"), str(tmp_path / "spool"), prefix="clinic-a").open()
    assert isinstance(storage, S3Storage)
    key, recording = encryption.new_data_key(), str(uuid.uuid4())
    write_recording(storage, RecordingSpec(recording, key, 10.0), 25.0)
    assert not any(path.is_file() for path in (tmp_path / "spool").rglob("*"))  # uploaded, spool emptied

    result = finalise(storage, recording, key)
    assert result.state == "complete", result.problems
    assert len(result.segments) == 9
    output = next(o for o in result.outputs if o.participant == "physician")
    sealed = storage.get(output.key)
    assert hashlib.sha256(sealed).hexdigest() == output.sha256
    assert storage.size(output.key) == len(sealed)
    assert storage.read(output.key, 100, 50) == sealed[100:150]
    assert b"\xfc\x00\x00\x00\x05" not in sealed  # the bucket holds sealed bytes only
    assert all(name.startswith(f"{recording}/") for name in storage.list(recording))

    storage.delete_prefix(recording)
    assert storage.list(recording) == []


def test_a_crash_leaves_markers_that_make_the_recording_partial(s3: S3Server, tmp_path: Path) -> None:
    storage = s3.location(s3.bucket("recordings"), str(tmp_path / "spool")).open()
    key, recording = encryption.new_data_key(), str(uuid.uuid4())
    last = write_recording(storage, RecordingSpec(recording, key, 10.0), 25.0, stop=False)
    parts = [name for name in storage.list(recording) if name.endswith(PART)]
    assert len(parts) == len(last)  # the segments being written: an empty marker each, the data still spooled

    result = finalise(storage, recording, key)
    assert result.state == "partial", result.problems
    assert sorted(result.lost) == sorted(f"{track}#{index}" for track, index in last.items())


async def test_playback_streams_from_the_bucket(aiohttp_client: Any, tmp_path: Path, database_url: str,
                                               s3: S3Server) -> None:
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url, **s3.settings(s3.bucket("clinic")))
    client, doctor = clinic["client"], clinic["doctor"]
    assert not (tmp_path / "var" / "recordings" / clinic["recording"] / "media").exists()  # not on the disk
    url = f"/api/v1/recordings/{clinic['recording']}/media?participant=patient"
    whole = await client.get(url, headers=doctor.auth)
    assert whole.status == 200
    webm = await whole.read()
    part = await client.get(url, headers={**doctor.auth, "Range": "bytes=1000-1099"})
    assert part.status == 206
    assert await part.read() == webm[1000:1100]
    listed = await (await client.get(f"/api/v1/recordings/{clinic['recording']}", headers=doctor.auth)).json()
    patient = next(p for p in listed["participants"] if p["participant"] == "patient")
    assert patient["media_sha256"] == hashlib.sha256(webm).hexdigest()


@pytest.mark.slow
@pytest.mark.usefixtures("passthrough_installed")
async def test_a_call_hosted_by_a_media_worker_records_into_the_bucket(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    """The whole path: signaling, a media worker process (which gets the bucket's settings over its channel), the
    capture, the end of the call, finalisation: every frame the patient sent is in the patient's WebM."""
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch,
                                                media_workers=1, **s3.settings(s3.bucket("clinic")))
    client, consultation = clinic["client"], clinic["consultation"]
    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0)
    try:
        await _until(lambda: all(len(c.received["video"]) >= 45 for c in (a, b)), "three seconds of video each way")
        await physician_ends(doctor, patient)
    finally:
        await stop_media(a)
        await stop_media(b)
    [recording] = await recordings_of(client, consultation)
    assert (recording.state, recording.stop_reason) == (RecordingState.stopped, "ended")
    app = client.app
    settings = app[keys.settings]
    async with transaction(app[keys.sessions]) as session:
        result = await services.finalise_recording(session, recording_id=recording.id, keys=app[keys.key_material],
                                                   seal_keys=load_seal_keys(settings),
                                                   storage=services.storage_for(settings), now=utcnow())
    assert result is not None
    assert result.state == "complete", result.problems
    storage = services.storage_for(settings)
    assert isinstance(storage, S3Storage)
    data_key = services.data_key_of((await recordings_of(client, consultation))[0], app[keys.key_material])
    output = next(o for o in result.outputs if o.participant == "patient")
    webm = encryption.open_sealed(storage.get(output.key), data_key)[1]
    recorded = {frame.data for frame in _demux(webm)["video"]}
    seen = a.received["video"]
    missing = [index for index, frame in enumerate(seen) if frame.data not in recorded]
    # What the physician saw of the patient is in the recording, but for the last frame or two: the recording
    # stops as the call ends, a moment before the peers close.
    assert all(index >= len(seen) - 2 for index in missing), missing
    assert len(recorded & {frame.data for frame in b.video.sent}) >= 45
