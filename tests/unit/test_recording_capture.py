"""The live recorder around its tracks: connections coming and going, the end marker, and what a crash at a
segment's rotation leaves (a complete segment not yet journaled is recovered, not lost)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.recording import encryption
from media.recording.capture import (
    CallRecorder,
    RecordingSpec,
    end_key,
    journal_entry_key,
    segment_key,
)
from media.recording.finalise import finalise
from media.recording.storage import PART, LocalStorage
from tests.recording_helpers import FakeClock, write_recording


class FakeReceiver:
    """What the recorder touches of an aiortc receiver: the two packet handlers it taps, the codecs."""

    def __init__(self) -> None:
        self._RTCRtpReceiver__codecs = {111: RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000,
                                                                  channels=2, payloadType=111)}
        self.handled = 0

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.handled += 1

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        pass

    def getSynchronizationSources(self) -> list[Any]:  # aiortc's name
        return []


async def _speak(receiver: FakeReceiver, clock: FakeClock, *, seconds: float, ssrc: int) -> None:
    for step in range(int(seconds * 50)):
        clock.now += 0.02
        await receiver._handle_rtp_packet(RtpPacket(payload_type=111, sequence_number=step, timestamp=step * 960,
                                                    ssrc=ssrc, payload=b"\xfc" + step.to_bytes(4, "big")), 0)


async def test_the_end_marker_names_every_track_also_those_of_connections_that_ended(tmp_path: Path) -> None:
    storage, clock = LocalStorage(tmp_path), FakeClock()
    spec = RecordingSpec("rec", encryption.new_data_key(), 10.0)
    recorder = CallRecorder(spec, storage, clock=clock)
    first, second = FakeReceiver(), FakeReceiver()
    recorder.attach("peer-1", "patient", first, "audio")  # type: ignore[arg-type]  # a stand-in receiver
    await _speak(first, clock, seconds=15, ssrc=1)
    assert first.handled == 750  # aiortc still gets every packet
    recorder.detach("peer-1")  # the patient's connection dropped ...
    recorder.attach("peer-2", "patient", second, "audio")  # type: ignore[arg-type]  # ... and came back
    await _speak(second, clock, seconds=5, ssrc=2)
    await recorder.stop("ended")

    end = json.loads(storage.get(end_key("rec")))["entry"]
    assert end["tracks"] == {"patient.audio.0": 1, "patient.audio.1": 0}
    # So removing the first connection's last segment (and its journal entry) cannot pass unnoticed.
    (tmp_path / segment_key("rec", "patient.audio.0", 1)).unlink()
    (tmp_path / journal_entry_key("rec", "patient.audio.0", 1)).unlink()
    result = finalise(storage, "rec", spec.data_key)
    assert result.state == "damaged"
    assert any("patient.audio.0#1" in problem for problem in result.problems), result.problems


def test_a_crash_at_a_rotation_recovers_the_complete_segment_and_loses_only_the_one_being_written(
        tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    spec = RecordingSpec("rec", encryption.new_data_key(), 10.0)
    write_recording(storage, spec, 25.0, stop=False)  # segments 0 and 1 done, 2 being written, per track
    # The writer was behind: segment 1 of the patient's audio was complete but neither journaled nor published.
    (tmp_path / journal_entry_key("rec", "patient.audio.0", 1)).unlink()
    done = tmp_path / segment_key("rec", "patient.audio.0", 1)
    done.rename(str(done) + PART)

    result = finalise(storage, "rec", spec.data_key)
    assert result.state == "partial", result.problems
    assert "patient.audio.0#1" not in result.lost
    assert "patient.audio.0#2" in result.lost
    recovered = [s for s in result.segments if s.get("recovered")]
    assert [(s["track"], s["index"]) for s in recovered] == [("patient.audio.0", 1)]
    patient = next(o for o in result.outputs if o.participant == "patient")
    assert patient.audio_frames == 2 * 500  # segments 0 and 1 (recovered); 2 was cut off
    gap = next(g for g in result.gaps if g["participant"] == "patient")
    assert gap["end_ms"] is None
    assert abs(gap["start_ms"] - 20_000) <= 40  # where the patient's audio stops: 20 s in


def test_a_damaged_segment_is_marked_where_it_was(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    spec = RecordingSpec("rec", encryption.new_data_key(), 10.0)
    write_recording(storage, spec, 25.0)
    path = tmp_path / segment_key("rec", "patient.audio.0", 1)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))

    result = finalise(storage, "rec", spec.data_key)
    assert result.state == "damaged"
    [gap] = [g for g in result.gaps if g["participant"] == "patient"]
    assert abs(gap["start_ms"] - 10_000) <= 40
    assert abs(gap["end_ms"] - 20_000) <= 40
    assert "patient.audio.0#1" in gap["reason"]
