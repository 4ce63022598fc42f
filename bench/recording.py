"""Recording: what capture costs per stream, against aiortc's MediaRecorder, and how fast finalising and playback go.

- Capture: the recorder's live path (media.recording.capture.TrackCapture: a record per RTP packet, sealed in
  64 KiB AES-GCM chunks, written and fsynced by the writer thread) fed the packets of the call benchmark's media
  (VP8 640x480 30 fps ~1 Mbit/s and Opus 20 ms, packetized as aiortc sends them), as fast as it takes them. CPU
  seconds of this process per second of media per stream.
- MediaRecorder: aiortc's recorder on the same frames. It needs pictures and sound, so each VP8 frame is decoded
  first (as aiortc's receiver would) and MediaRecorder re-encodes to WebM (VP8 + Opus).
- Finalisation: a two-participant recording of FINALISE_SECONDS, verified, reassembled, muxed and sealed; wall
  time as a multiple of real time.
- Playback: decrypting a finished WebM chunk by chunk, as the playback API streams it (MB/s).
"""

from __future__ import annotations

import asyncio
import fractions
import io
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.call import AUDIO_RATE, AUDIO_SAMPLES, FPS, LOOP_SECONDS, Encoded, encode_sources

CAPTURE_SECONDS = 60  # of media per stream
CAPTURE_STREAMS = 8  # video+audio pairs, captured together
RECORDER_SECONDS = 10  # of media through MediaRecorder (it is slow)
FINALISE_SECONDS = 300  # a five-minute consultation, two participants


def _packets(encoded: Encoded, seconds: float, ssrc: int) -> list[tuple[float, str, object]]:
    """(media time, kind, RtpPacket) for `seconds` of the looped sources, as aiortc's sender packetizes them."""
    import av
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.rtp import RtpPacket

    packer = Vp8Encoder()
    out: list[tuple[float, str, object]] = []
    seq = {"video": 0, "audio": 0}
    for index in range(int(seconds * FPS)):
        frame = av.Packet(encoded.video[index % len(encoded.video)])
        frame.pts, frame.time_base = index, fractions.Fraction(1, FPS)
        payloads, timestamp = packer.pack(frame)
        for number, payload in enumerate(payloads):
            out.append((index / FPS, "video", RtpPacket(payload_type=96, sequence_number=seq["video"] & 0xFFFF,
                                                        timestamp=timestamp & 0xFFFFFFFF, ssrc=ssrc,
                                                        marker=int(number == len(payloads) - 1), payload=payload)))
            seq["video"] += 1
    for index in range(int(seconds * AUDIO_RATE / AUDIO_SAMPLES)):
        out.append((index * AUDIO_SAMPLES / AUDIO_RATE, "audio", RtpPacket(
            payload_type=111, sequence_number=index & 0xFFFF, timestamp=(index * AUDIO_SAMPLES) & 0xFFFFFFFF,
            ssrc=ssrc + 1, payload=encoded.audio[index % len(encoded.audio)])))
    out.sort(key=lambda item: item[0])
    return out


def _capture(folder: Path, encoded: Encoded, *, streams: int, seconds: float, participants: tuple[str, ...] = (),
             recording_id: str | None = None, data_key: bytes | None = None) -> tuple[float, str, bytes]:
    """Capture `streams` participants' audio and video; (CPU seconds, recording id, data key)."""
    from media.recording import encryption
    from media.recording.capture import RecordingSpec, TrackCapture, write_end_marker
    from media.recording.storage import BackgroundWriter, LocalStorage
    from tests.recording_helpers import OPUS, VP8

    storage = LocalStorage(folder)
    spec = RecordingSpec(recording_id or str(uuid.uuid4()), data_key or encryption.new_data_key(), 10.0)
    clock = [1_800_000_000.0]
    writer = BackgroundWriter()
    names = participants or tuple(f"p{n}" for n in range(streams))  # roles are letters only: p0 -> pa
    names = tuple(name if name.isalpha() else "p" + "abcdefghijklmnopqrstuvwxyz"[int(name[1:])] for name in names)
    captures = {(name, kind): TrackCapture(spec=spec, storage=storage, writer=writer, track=f"{name}.{kind}.0",
                                           kind=kind, codecs=(lambda c=(VP8 if kind == "video" else OPUS): c),
                                           clock=lambda: clock[0])
                for name in names for kind in ("video", "audio")}
    flows = {name: _packets(encoded, seconds, 1000 + 10 * n) for n, name in enumerate(names)}
    merged = sorted(((at, name, kind, packet) for name, flow in flows.items() for at, kind, packet in flow),
                    key=lambda item: item[0])
    started = time.process_time()
    for at, name, kind, packet in merged:
        clock[0] = 1_800_000_000.0 + at
        captures[name, kind].rtp(packet)  # type: ignore[arg-type]
    for capture in captures.values():
        capture.close()
    writer.call(lambda: write_end_marker(storage, spec, {"reason": "bench", "stopped_at": clock[0],
                                                         "tracks": {c.track: c.index for c in captures.values()}}))
    writer.drain(600)
    writer.stop()
    return time.process_time() - started, spec.recording_id, spec.data_key


async def _media_recorder(folder: Path, encoded: Encoded, seconds: float) -> float:
    """aiortc's MediaRecorder on the same frames (decoded first, as its input must be); CPU seconds."""
    import av
    from aiortc.contrib.media import MediaRecorder
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class Decoded(MediaStreamTrack):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind
            self._index = 0
            self._codec = av.CodecContext.create("libvpx" if kind == "video" else "libopus", "r")
            self._total = int(seconds * (FPS if kind == "video" else AUDIO_RATE / AUDIO_SAMPLES))

        async def recv(self) -> av.VideoFrame | av.AudioFrame:
            while self._index < self._total:
                frames = encoded.video if self.kind == "video" else encoded.audio
                packet = av.Packet(frames[self._index % len(frames)])
                self._index += 1
                decoded = self._codec.decode(packet)
                if decoded:
                    frame = decoded[0]
                    rate = FPS if self.kind == "video" else AUDIO_RATE
                    frame.pts = self._index * (1 if self.kind == "video" else AUDIO_SAMPLES)
                    frame.time_base = fractions.Fraction(1, rate)
                    await asyncio.sleep(0)
                    return frame
            self.stop()
            raise MediaStreamError

    recorder = MediaRecorder(str(folder / "media-recorder.webm"))
    tracks = [Decoded("video"), Decoded("audio")]
    for track in tracks:
        recorder.addTrack(track)
    started = time.process_time()
    await recorder.start()
    while any(track.readyState == "live" for track in tracks):  # noqa: ASYNC110  # the tracks end themselves
        await asyncio.sleep(0.05)
    await recorder.stop()
    return time.process_time() - started


def bench_recording() -> None:
    from media.recording import encryption, services
    from media.recording.finalise import finalise
    from media.recording.storage import LocalStorage

    encoded = encode_sources()
    kbit = sum(len(v) for v in encoded.video) * 8 / LOOP_SECONDS / 1000
    print(f"{'recorded media: VP8 640x480 30 fps + Opus':<48} {kbit:>12,.0f} kbit/s video")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        cpu, _, _ = _capture(folder / "capture", encoded, streams=CAPTURE_STREAMS, seconds=CAPTURE_SECONDS)
        ours = cpu / (CAPTURE_STREAMS * CAPTURE_SECONDS)
        print(f"{f'capture, {CAPTURE_STREAMS} streams x {CAPTURE_SECONDS} s (CPU per media s)':<48}"
              f" {ours * 1000:>12.1f} ms/s per stream (audio + video)")
        theirs = asyncio.run(_media_recorder(folder, encoded, RECORDER_SECONDS)) / RECORDER_SECONDS
        print(f"{f'aiortc MediaRecorder, {RECORDER_SECONDS} s (decode + re-encode)':<48}"
              f" {theirs * 1000:>12.1f} ms/s per stream")
        print(f"{'MediaRecorder / capture CPU':<48} {theirs / ours:>12.0f} x")
        print(f"{'streams one core captures (100% of it)':<48} {1 / ours:>12.0f}")

        cpu, recording_id, data_key = _capture(folder / "final", encoded, streams=2, seconds=FINALISE_SECONDS,
                                               participants=("physician", "patient"))
        storage = LocalStorage(folder / "final")
        started, cpu_started = time.perf_counter(), time.process_time()
        result = finalise(storage, recording_id, data_key)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        assert result.state == "complete", result.problems
        print(f"{f'finalise a {FINALISE_SECONDS // 60}-minute call, two participants':<48}"
              f" {FINALISE_SECONDS / wall:>12.0f} x real time   ({wall:.1f} s wall, {cpu:.1f} s CPU)")

        output = result.outputs[0]
        sealed = storage.get(output.key)
        header = encryption.read_header(io.BytesIO(sealed))
        playback = services.Playback(None, type("Output", (), {"storage_key": output.key})(),  # type: ignore[arg-type]
                                     encryption.RangeReader(header, data_key, len(sealed)), storage)
        started = time.perf_counter()
        rounds = 5
        for _ in range(rounds):
            position = 0
            while position < playback.reader.size:
                upto = min(playback.reader.size - 1, position + encryption.CHUNK_BYTES - 1)
                services.read_plaintext(playback, position, upto)
                position = upto + 1
        seconds = time.perf_counter() - started
        print(f"{'playback decryption (chunk by chunk)':<48} {rounds * playback.reader.size / seconds / 1e6:>12.0f}"
              f" MB/s   ({output.plaintext_size / 1e6:.1f} MB WebM, {os.cpu_count()} cores)")


if __name__ == "__main__":
    from server.observability import configure_logging

    configure_logging(fmt="console", level="WARNING")
    bench_recording()
