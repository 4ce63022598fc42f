"""Live capture: each participant's received RTP and RTCP packets, sealed into ~10-second segments per track.

As Janus records, the server keeps what it received (SRTP removed, nothing decoded), with its arrival time, and
leaves reordering, retransmissions, frame assembly and audio/video sync to the finaliser, which has the whole
stream at hand (media.recording.packets). Live this costs a struct and a buffer append per packet.

A track is one participant's audio or video over one peer connection (`patient.video.0`); a reconnection is a
new peer connection, so a new track (`patient.video.1`) whose first segment starts after the gap. Segments
rotate every `segment_seconds` of arrival time, and a video track asks its sender for a keyframe at each
rotation, so the finished recording has a keyframe (a seek point) at least that often.

Files, under the recording's folder in the store:

    segments/<track>/<index>.seg    sealed records (below); `.part` while being written
    journal/<track>.<index>.json    written when the segment is complete: its SHA-256 and size, MACed
    end.json                        written when the recording stops cleanly (absent after a crash), MACed

A segment's plaintext is a sequence of records `type (1) | arrival µs (8) | length (4) | body`: a META record
first (the track's codecs, as JSON), then RTP records (`seq, timestamp, ssrc, payload type, marker` and the
payload) and RTCP sender reports (`ssrc, NTP time, RTP time`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiortc import RTCRtpReceiver
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket, RtpPacket
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from media import passthrough
from media.recording.encryption import SealedWriter
from media.recording.storage import BackgroundWriter, QueuedFile, RecordingStorage

log = structlog.get_logger("telemed.media.recording")

SEGMENT_SECONDS = 10.0
#: How long stopping waits for the writer thread to put everything on disk.
WRITE_TIMEOUT = 30.0
RECORD = struct.Struct(">BQI")  # type, arrival (µs since the epoch), body length
RTP_HEADER = struct.Struct(">HIIBB")  # sequence number, timestamp, SSRC, payload type, marker
SENDER_REPORT = struct.Struct(">IQI")  # SSRC, NTP timestamp, RTP timestamp
META, RTP, SR = 0, 1, 2
_JOURNAL_INFO = b"telemed recording journal v1"


def journal_key(data_key: bytes) -> bytes:
    """The MAC key of the recording's journal: only a holder of the data key can write a believable entry."""
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_JOURNAL_INFO).derive(data_key)


def sign_entry(key: bytes, entry: dict[str, Any]) -> bytes:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"entry": entry, "mac": mac}, sort_keys=True).encode()


def segment_key(recording_id: str, track: str, index: int) -> str:
    return f"{recording_id}/segments/{track}/{index:05d}.seg"


def journal_entry_key(recording_id: str, track: str, index: int) -> str:
    return f"{recording_id}/journal/{track}.{index:05d}.json"


def end_key(recording_id: str) -> str:
    return f"{recording_id}/end.json"


@dataclass(frozen=True)
class RecordingSpec:
    """What a media process needs to record a call: which recording, its data key, where to write."""

    recording_id: str
    data_key: bytes
    segment_seconds: float = SEGMENT_SECONDS


class TrackCapture:
    """One track's segments: records appended in the event loop, sealed chunks written by the writer thread."""

    def __init__(self, *, spec: RecordingSpec, storage: RecordingStorage, writer: BackgroundWriter, track: str,
                 kind: str, codecs: Callable[[], list[dict[str, Any]]], on_rotate: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.track = track
        self.kind = kind
        self._spec = spec
        self._storage = storage
        self._writer = writer
        self._codecs = codecs
        self._on_rotate = on_rotate
        self._clock = clock
        self._journal_key = journal_key(spec.data_key)
        self.index = -1
        self._segment: SealedWriter | None = None
        self._file: QueuedFile | None = None
        self._started = 0.0
        self.closed = False

    def rtp(self, packet: RtpPacket) -> None:
        now = self._clock()
        header = RTP_HEADER.pack(packet.sequence_number, packet.timestamp, packet.ssrc, packet.payload_type,
                                 1 if packet.marker else 0)
        self._record(RTP, now, header + packet.payload)

    def rtcp(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self._record(SR, self._clock(), SENDER_REPORT.pack(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp))

    def close(self) -> None:
        """Complete the current segment (if any); the track takes no more packets."""
        if not self.closed:
            self.closed = True
            self._complete()

    def _record(self, kind: int, at: float, body: bytes) -> None:
        if self.closed:
            return
        segment = self._segment
        if segment is None or at - self._started >= self._spec.segment_seconds:
            segment = self._rotate(at)
        segment.write(RECORD.pack(kind, int(at * 1_000_000), len(body)) + body)

    def _rotate(self, at: float) -> SealedWriter:
        rotated = self._segment is not None
        self._complete()
        self.index += 1
        key = segment_key(self._spec.recording_id, self.track, self.index)
        storage = self._storage
        self._file = QueuedFile(lambda: storage.create(key), self._writer)
        self._segment = SealedWriter(self._file, self._spec.data_key, {
            "recording": self._spec.recording_id, "track": self.track, "index": self.index, "kind": self.kind})
        self._started = at
        meta = json.dumps({"track": self.track, "kind": self.kind, "codecs": self._codecs()}).encode()
        self._segment.write(RECORD.pack(META, int(at * 1_000_000), len(meta)) + meta)
        if rotated and self._on_rotate is not None:
            self._on_rotate()
        return self._segment

    def _complete(self) -> None:
        """Seal the last chunk, then (in order, in the writer thread) close, journal, publish."""
        segment, file = self._segment, self._file
        if segment is None or file is None:
            return
        self._segment = self._file = None
        sha256 = segment.close()
        key = segment_key(self._spec.recording_id, self.track, self.index)
        entry = sign_entry(self._journal_key, {"track": self.track, "index": self.index, "sha256": sha256,
                                               "size": segment.size})
        journal = journal_entry_key(self._spec.recording_id, self.track, self.index)
        storage = self._storage
        file.close()
        self._writer.call(lambda: storage.put(journal, entry))
        self._writer.call(lambda: storage.publish(key))


def _next_epochs(storage: RecordingStorage, recording_id: str) -> dict[str, int]:
    """Per role, the first connection number no earlier recorder of this recording used (a media worker that
    died while recording left its tracks; the worker taking the call over starts new ones after them)."""
    epochs: dict[str, int] = {}
    for key in storage.list(f"{recording_id}/segments"):
        track = key.split("/")[2]
        role, _, epoch = track.split(".")
        epochs[role] = max(epochs.get(role, 0), int(epoch) + 1)
    return epochs


def write_end_marker(storage: RecordingStorage, spec: RecordingSpec, end: dict[str, Any]) -> None:
    """The recording stopped cleanly: `end` says why, when, and each track's last segment index."""
    storage.put(end_key(spec.recording_id), sign_entry(journal_key(spec.data_key), end))


def codec_descriptions(receiver: RTCRtpReceiver) -> list[dict[str, Any]]:
    """Known once the receiver started (aiortc starts it when the transport connects): read at the first packet."""
    return [{"payload_type": codec.payloadType, "mime_type": codec.mimeType, "clock_rate": codec.clockRate,
             "channels": codec.channels, "parameters": dict(codec.parameters)}
            for codec in passthrough.receiver_codecs(receiver)]


class CallRecorder:
    """A call's recording in this media process: a TrackCapture per participant, kind and peer connection."""

    def __init__(self, spec: RecordingSpec, storage: RecordingStorage, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self._storage = storage
        self._clock = clock
        self._writer = BackgroundWriter()
        self._tracks: dict[str, list[tuple[TrackCapture, Callable[[], None]]]] = {}  # by peer id
        self._epochs = _next_epochs(storage, spec.recording_id)  # next peer-connection number per role
        self._peer_epochs: dict[str, int] = {}
        self._last_index: dict[str, int] = {}  # every track's last segment, detached ones too: the end marker
        self._keyframe_tasks: set[asyncio.Task[bool]] = set()
        self._stopped = False

    def attach(self, peer_id: str, role: str, receiver: RTCRtpReceiver, kind: str) -> None:
        """Capture what this peer's receiver gets from now on."""
        if self._stopped:
            return
        role = role or "participant"
        if peer_id not in self._peer_epochs:
            self._peer_epochs[peer_id] = self._epochs.get(role, 0)
            self._epochs[role] = self._peer_epochs[peer_id] + 1
        track = f"{role}.{kind}.{self._peer_epochs[peer_id]}"
        capture = TrackCapture(spec=self.spec, storage=self._storage, writer=self._writer, track=track, kind=kind,
                               codecs=lambda: codec_descriptions(receiver), clock=self._clock,
                               on_rotate=(lambda: self._ask_keyframe(receiver)) if kind == "video" else None)
        untap = passthrough.tap_receiver(receiver, capture.rtp, capture.rtcp)
        self._tracks.setdefault(peer_id, []).append((capture, untap))
        if kind == "video":
            self._ask_keyframe(receiver)  # the track's first frame should be a keyframe too

    def detach(self, peer_id: str) -> None:
        """The peer left or dropped: its tracks' segments complete (a reconnection starts new tracks)."""
        for capture, untap in self._tracks.pop(peer_id, []):
            untap()
            capture.close()
            if capture.index >= 0:
                self._last_index[capture.track] = capture.index

    async def stop(self, reason: str) -> dict[str, Any]:
        """Stop capturing, complete every segment, write the end marker, and wait until all is on disk."""
        if self._stopped:
            return {}
        self._stopped = True
        for peer_id in list(self._tracks):
            self.detach(peer_id)
        for task in list(self._keyframe_tasks):
            task.cancel()
        end = {"reason": reason, "stopped_at": self._clock(), "tracks": dict(self._last_index)}
        self._writer.call(lambda: write_end_marker(self._storage, self.spec, end))
        await asyncio.get_running_loop().run_in_executor(None, self._finish_writing)
        return end

    def _finish_writing(self) -> None:
        if not self._writer.drain(WRITE_TIMEOUT):
            # Still writing (a stalled disk or store): the end marker is not written yet, so the finaliser waits
            # (media.recording.services.FINALISE_GRACE) rather than finalise half the files.
            log.error("recording_write_stalled", recording_id=self.spec.recording_id, seconds=WRITE_TIMEOUT)
        self._writer.stop()
        for error in self._writer.errors:
            log.error("recording_write_failed", error=type(error).__name__, detail=str(error))

    def _ask_keyframe(self, receiver: RTCRtpReceiver) -> None:
        task = asyncio.ensure_future(passthrough.request_keyframe(receiver))
        self._keyframe_tasks.add(task)
        task.add_done_callback(self._keyframe_tasks.discard)
