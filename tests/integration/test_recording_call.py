"""Recording a call held by two aiortc clients through the server's peers (LocalMediaCall), on 127.0.0.1.

The clients send real VP8 and Opus (PyAV's libvpx and libopus) and keep every encoded frame they sent, with the
time they sent it. The recording is finalised and each participant's WebM opened with PyAV: the frames in it must
be the frames sent, byte for byte, at the times they were sent (audio and video in sync), with nothing dropped
beyond what the network really lost.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import uuid
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from media.calls import LocalMediaEngine
from media.recording import encryption
from media.recording.capture import RecordingSpec
from media.recording.finalise import Finalised, finalise
from media.recording.storage import LocalStorage, StorageLocation
from tests.integration.test_media_loss import LossyLink, lossy_link  # noqa: F401  # the fixture
from tests.integration.test_media_passthrough import (
    Client,
    Sent,
    _client,
    _until,
    join_call,
    loopback_only,  # noqa: F401  # the fixture
)

pytestmark = pytest.mark.slow

#: The issue asks for a 60-second call; TELEMED_TEST_RECORDING_SECONDS shortens it while developing.
CALL_SECONDS = float(os.environ.get("TELEMED_TEST_RECORDING_SECONDS", "60"))
SEGMENT_SECONDS = 10.0


@dataclass(frozen=True)
class Recorded:
    data: bytes
    at_ms: int
    keyframe: bool


def _demux(webm: bytes) -> dict[str, list[Recorded]]:
    """Every packet of the file by stream type, as stored (PyAV reads the file; nothing is decoded)."""
    out: dict[str, list[Recorded]] = {"video": [], "audio": []}
    with av.open(io.BytesIO(webm)) as container:
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            ms = round(packet.pts * packet.time_base * 1000)
            out[packet.stream.type].append(Recorded(bytes(packet), ms, packet.is_keyframe))
    return out


def _decodes(webm: bytes) -> tuple[int, int]:
    """Frames decoded from the file's video and audio: it plays."""
    with av.open(io.BytesIO(webm)) as container:
        video = sum(1 for _ in container.decode(video=0))
    with av.open(io.BytesIO(webm)) as container:
        audio = sum(1 for _ in container.decode(audio=0))
    return video, audio


def _matched(recorded: list[Recorded], sent: list[Sent]) -> list[tuple[Recorded, Sent]]:
    """Recorded frames paired with the frames sent, by their bytes (each sent frame used once, in order)."""
    by_data: dict[bytes, list[Sent]] = {}
    for frame in sent:
        by_data.setdefault(frame.data, []).append(frame)
    pairs = []
    for frame in recorded:
        candidates = by_data.get(frame.data)
        assert candidates, f"a recorded frame ({len(frame.data)} bytes) is no frame that was sent"
        pairs.append((frame, candidates.pop(0)))
    return pairs


async def _hold_recorded_call(tmp_path: Path, seconds: float, lossy: LossyLink | None = None,
                              ) -> tuple[Finalised, dict[str, Client], LocalStorage, bytes, str]:
    engine = LocalMediaEngine(ice_servers=lambda peer_id: [])
    engine.start()
    call = engine.open_call(uuid.uuid4(), lambda peer_id, state: None)
    clients = {"physician": _client(shade=90, pitch=330.0), "patient": _client(shade=170, pitch=440.0)}
    recording_id, data_key = str(uuid.uuid4()), encryption.new_data_key()
    storage = LocalStorage(tmp_path / "recordings")
    try:
        if lossy is not None:
            lossy.transports.update(t.sender.transport for t in clients["patient"].pc.getTransceivers())
        await call.start_recording(RecordingSpec(recording_id, data_key, SEGMENT_SECONDS),
                                   StorageLocation(str(storage.root)))
        for role, client in clients.items():
            await join_call(call, client, role, role)
        await _until(lambda: all(len(c.received["video"]) >= 5 for c in clients.values()), "media both ways")
        await asyncio.sleep(seconds)
        for client in clients.values():  # the last frames sent arrive and are captured; nothing more is sent
            for source in (client.video, client.audio):
                source.stop()
        await asyncio.sleep(0.5)
        await call.stop_recording("ended")
    finally:
        await engine.close()
        for client in clients.values():
            await client.pc.close()
            await asyncio.gather(*client.tasks)
    return finalise(storage, recording_id, data_key), clients, storage, data_key, recording_id


def _webm(storage: LocalStorage, result: Finalised, data_key: bytes, participant: str) -> bytes:
    output = next(o for o in result.outputs if o.participant == participant)
    return encryption.open_sealed(storage.get(output.key), data_key)[1]


@pytest.mark.usefixtures("loopback_only")
async def test_a_recorded_call_holds_every_frame_sent_byte_identical_and_in_sync(tmp_path: Path) -> None:
    result, clients, storage, data_key, _ = await _hold_recorded_call(tmp_path, CALL_SECONDS)

    assert result.state == "complete", result.problems
    assert len(result.segments) >= 4 * int(CALL_SECONDS // SEGMENT_SECONDS)  # ~10 s segments, 4 tracks
    for role, client in clients.items():
        webm = _webm(storage, result, data_key, role)
        recorded = _demux(webm)
        for kind in ("video", "audio"):
            sent = getattr(client, kind).sent
            pairs = _matched(recorded[kind], sent)
            assert len(pairs) >= 0.99 * len(sent), f"{role} {kind}: {len(pairs)} of {len(sent)} frames recorded"
        call_ms = (max(s.at for s in client.audio.sent) - min(s.at for s in client.audio.sent)) * 1000
        output = next(o for o in result.outputs if o.participant == role)
        assert abs(output.duration_ms - call_ms) <= 0.02 * call_ms + 40, (output.duration_ms, call_ms)
        assert output.codecs == ["vp8", "opus"]
        video_frames, audio_frames = _decodes(webm)
        assert video_frames >= 0.99 * len(client.video.sent)
        assert audio_frames >= 0.99 * len(client.audio.sent)
        _assert_in_sync(recorded, client)


def _assert_in_sync(recorded: dict[str, list[Recorded]], client: Client, tolerance_ms: float = 40.0,
                    window_s: float = 10.0) -> None:
    """Each frame sits on the recording's timeline where it was sent: in every 10-second window, the video's
    median offset (recording time minus sending time) is within 40 ms of the audio's. Medians, not single frames:
    a frame's sending time is taken after the test's own encoder, whose time varies on a busy machine."""
    delays: dict[str, list[tuple[float, float]]] = {}
    for kind in ("video", "audio"):
        pairs = _matched(recorded[kind], getattr(client, kind).sent)
        delays[kind] = [(sent.at, frame.at_ms - sent.at * 1000) for frame, sent in pairs]
    start = min(at for at, _ in delays["audio"])
    windows = int((max(at for at, _ in delays["audio"]) - start) // window_s) + 1
    for window in range(windows):
        medians = {}
        for kind, values in delays.items():
            inside = [d for at, d in values if window <= (at - start) / window_s < window + 1]
            medians[kind] = statistics.median(inside) if len(inside) >= 10 else None
        video, audio = medians["video"], medians["audio"]
        if video is None or audio is None:
            continue  # a last window with hardly any frames
        assert abs(video - audio) <= tolerance_ms, f"{window * window_s:.0f} s in: video is {video - audio:.0f} ms off"


@pytest.mark.usefixtures("loopback_only")
async def test_a_recording_under_two_percent_loss_keeps_the_audio_and_every_complete_video_frame(
        tmp_path: Path, lossy_link: LossyLink) -> None:  # noqa: F811  # the fixture imported above
    lossy_link.every = 50  # 2% of the patient's RTP packets, retransmissions included
    result, clients, storage, data_key, _ = await _hold_recorded_call(tmp_path, min(CALL_SECONDS, 20.0), lossy_link)

    assert lossy_link.dropped > 0
    assert result.state == "complete", result.problems
    client = clients["patient"]
    recorded = _demux(_webm(storage, result, data_key, "patient"))
    audio = _matched(recorded["audio"], client.audio.sent)
    assert len(audio) >= 0.97 * len(client.audio.sent), f"{len(audio)} of {len(client.audio.sent)} audio frames"
    video = _matched(recorded["video"], client.video.sent)
    incomplete = sum(stats["incomplete"] for track, stats in result.stats.items() if track.startswith("patient.video"))
    assert len(video) + incomplete >= len(client.video.sent) - 1, "a complete video frame is missing"
    _assert_in_sync(recorded, client)
