"""Offline: a captured track's packets back into the encoded frames that were sent, each with its capture time.

Done once the whole track is at hand, which is what makes it better than live reassembly: a retransmission that
came late still completes its frame, reordered packets are simply sorted, and audio is not held up by a jitter
buffer. Per track:

- RTX packets are unwrapped (RFC 4588: the original sequence number leads the payload), duplicates dropped;
- sequence numbers and RTP timestamps are unwrapped to 64 bits and the packets sorted;
- Opus: a packet is a frame. VP8: the packets of one timestamp form a frame when they run without a gap from the
  one starting partition 0 (S=1, PID=0) to the one with the marker bit; others are counted as incomplete;
- a frame's time is its RTP timestamp on the sender's clock, mapped to the sender's wall clock (NTP) by the
  nearest RTCP sender report. Audio and video from one sender share that clock, which keeps them in sync; the
  finaliser then places each sender's clock on the server's by the smallest observed transit delay.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiortc.codecs.vpx import VpxPayloadDescriptor, vp8_depayload

from media.passthrough import is_vp8_keyframe
from media.recording.capture import META, RECORD, RTP, RTP_HEADER, SENDER_REPORT, SR

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


class Unreadable(ValueError):
    """A segment's plaintext is not a sequence of capture records (it authenticated: a bug, not tampering)."""


@dataclass(frozen=True)
class Packet:
    arrival: float
    seq: int
    timestamp: int
    ssrc: int
    payload_type: int
    marker: bool
    payload: bytes


@dataclass
class CapturedTrack:
    """One track's records from all its segments, in the order captured."""

    track: str
    kind: str = ""
    codecs: list[dict[str, Any]] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)
    reports: list[tuple[float, int, int, int]] = field(default_factory=list)  # arrival, ssrc, ntp, rtp

    def add_segment(self, plaintext: bytes) -> tuple[float, float] | None:
        """Take one segment's records; the arrival times of its first and last record (None if empty)."""
        first = last = None
        for kind, arrival, body in records(plaintext):
            first = arrival if first is None else first
            last = arrival
            if kind == META:
                meta = json.loads(bytes(body))
                self.kind, self.codecs = meta["kind"], meta["codecs"]
            elif kind == RTP:
                seq, timestamp, ssrc, payload_type, marker = RTP_HEADER.unpack_from(body)
                self.packets.append(Packet(arrival, seq, timestamp, ssrc, payload_type, bool(marker),
                                           bytes(body[RTP_HEADER.size:])))
            elif kind == SR:
                self.reports.append((arrival, *SENDER_REPORT.unpack_from(body)))
        return None if first is None or last is None else (first, last)


def records(plaintext: bytes) -> Iterator[tuple[int, float, memoryview]]:
    view, offset = memoryview(plaintext), 0
    while offset < len(view):
        if offset + RECORD.size > len(view):
            raise Unreadable("a record is cut short")
        kind, arrival_us, length = RECORD.unpack_from(view, offset)
        offset += RECORD.size
        if kind not in (META, RTP, SR) or offset + length > len(view):
            raise Unreadable("not a capture record")
        yield kind, arrival_us / 1_000_000, view[offset:offset + length]
        offset += length


@dataclass(frozen=True)
class Frame:
    data: bytes
    sender_time: float  # seconds on the sender's clock (NTP-based when reports came, else RTP-based)
    keyframe: bool


@dataclass
class AssembledTrack:
    track: str
    kind: str
    codec: str  # "opus" or "vp8"
    clock_rate: int
    frames: list[Frame]
    min_delay: float  # smallest (arrival - sender time) over its packets
    reported: bool  # sender times came from RTCP sender reports
    first_arrival: float
    last_arrival: float
    packets: int
    incomplete_frames: int = 0


def _unwrap(value: int, reference: int | None, bits: int) -> int:
    if reference is None:
        return value
    span = 1 << bits
    candidate = (reference & ~(span - 1)) | value
    if candidate - reference > span // 2:
        candidate -= span
    elif reference - candidate > span // 2:
        candidate += span
    return candidate


def assemble(captured: CapturedTrack) -> AssembledTrack:
    """The track's frames in order, with their sender times; see the module doc."""
    codecs = {c["payload_type"]: c for c in captured.codecs}
    media = [c for c in captured.codecs if not c["mime_type"].lower().endswith("/rtx")]
    if not media:
        raise Unreadable(f"{captured.track}: no media codec in the capture")
    codec = media[0]
    name = codec["mime_type"].split("/")[1].lower()
    clock_rate = int(codec["clock_rate"])
    counts: dict[int, int] = {}
    for packet in captured.packets:
        if codecs.get(packet.payload_type, {}).get("mime_type", "").lower() == codec["mime_type"].lower():
            counts[packet.ssrc] = counts.get(packet.ssrc, 0) + 1
    media_ssrc = max(counts, key=lambda ssrc: counts[ssrc]) if counts else None
    unwrapped: dict[int, tuple[int, Packet]] = {}  # by extended sequence number
    last_seq: int | None = None
    last_ts: int | None = None
    for packet in captured.packets:
        described = codecs.get(packet.payload_type)
        if described is None:
            continue
        if described["mime_type"].lower().endswith("/rtx"):
            if len(packet.payload) < 2 or described["parameters"].get("apt") != codec["payload_type"]:
                continue
            packet = Packet(packet.arrival, int.from_bytes(packet.payload[:2], "big"), packet.timestamp,
                            media_ssrc or packet.ssrc, codec["payload_type"], packet.marker, packet.payload[2:])
        elif packet.payload_type != codec["payload_type"] or packet.ssrc != media_ssrc:
            continue
        if not packet.payload:
            continue  # padding-only
        seq = _unwrap(packet.seq, last_seq, 16)
        last_seq = seq if last_seq is None else max(last_seq, seq)
        timestamp = _unwrap(packet.timestamp, last_ts, 32)
        last_ts = timestamp if last_ts is None else max(last_ts, timestamp)
        if seq not in unwrapped:
            unwrapped[seq] = (timestamp, packet)
    ordered = [unwrapped[seq] + (seq,) for seq in sorted(unwrapped)]
    clock = _SenderClock(captured.reports, media_ssrc, clock_rate, ordered[0][0] if ordered else None)
    min_delay = min((p.arrival - clock.time(ts) for ts, p, _ in ordered), default=0.0)
    if name == "vp8":
        frames, incomplete = _vp8_frames(ordered, clock)
    else:
        frames, incomplete = [Frame(p.payload, clock.time(ts), True) for ts, p, _ in ordered], 0
    arrivals = [p.arrival for p in captured.packets] or [0.0]
    return AssembledTrack(captured.track, captured.kind, name, clock_rate, frames, min_delay, clock.reported,
                          min(arrivals), max(arrivals), len(captured.packets), incomplete)


def _vp8_frames(ordered: list[tuple[int, Packet, int]], clock: _SenderClock) -> tuple[list[Frame], int]:
    frames: list[Frame] = []
    incomplete = 0
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1][0] == ordered[start][0]:
            end += 1
        group = ordered[start:end + 1]
        start = end + 1
        try:
            descriptor, _ = VpxPayloadDescriptor.parse(group[0][1].payload)
        except ValueError:
            incomplete += 1
            continue
        contiguous = all(b[2] - a[2] == 1 for a, b in itertools.pairwise(group))
        if not (descriptor.partition_start and descriptor.partition_id == 0 and group[-1][1].marker and contiguous):
            incomplete += 1
            continue
        try:
            data = b"".join(vp8_depayload(packet.payload) for _, packet, _ in group)
        except ValueError:
            incomplete += 1
            continue
        frames.append(Frame(data, clock.time(group[0][0]), is_vp8_keyframe(data)))
    return frames, incomplete


class _SenderClock:
    """RTP timestamps to seconds on the sender's wall clock, by the nearest sender report (clock drift stays
    within one report interval); without reports, RTP time itself."""

    def __init__(self, reports: list[tuple[float, int, int, int]], ssrc: int | None, clock_rate: int,
                 first_timestamp: int | None) -> None:
        self._rate = clock_rate
        points: list[tuple[int, float]] = []
        last = first_timestamp  # the reports' RTP times unwrapped in the packets' 64-bit span
        for _, report_ssrc, ntp, rtp in reports:
            if report_ssrc != ssrc:
                continue
            last = _unwrap(rtp, last, 32)
            points.append((last, (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 2**32))
        points.sort()
        self._rtp = [p[0] for p in points]
        self._ntp = [p[1] for p in points]
        self.reported = bool(points)

    def time(self, timestamp: int) -> float:
        if not self._rtp:
            return timestamp / self._rate
        index = bisect.bisect_left(self._rtp, timestamp)
        if index == len(self._rtp) or (index > 0 and timestamp - self._rtp[index - 1] < self._rtp[index] - timestamp):
            index -= 1
        return self._ntp[index] + (timestamp - self._rtp[index]) / self._rate
