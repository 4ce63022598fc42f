"""Muxing a participant's frames into one WebM, in memory, without decoding or encoding anything.

PyAV opens an encoder per stream only to fill the stream's parameters (libopus writes the OpusHead the WebM
header needs); no frame passes through it. Timestamps are milliseconds on the recording's timeline, shared by all
participants' files, so a player that starts both at the same `currentTime` plays them in sync.
"""

from __future__ import annotations

import fractions
import io
from dataclasses import dataclass

import av

MILLISECOND = fractions.Fraction(1, 1000)


@dataclass(frozen=True)
class TimedFrame:
    data: bytes
    at_ms: int  # on the recording's timeline
    keyframe: bool


def vp8_dimensions(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe's header (RFC 6386 section 9.1)."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        return 640, 480
    return (int.from_bytes(keyframe[6:8], "little") & 0x3FFF, int.from_bytes(keyframe[8:10], "little") & 0x3FFF)


def mux(video: list[TimedFrame], audio: list[TimedFrame]) -> bytes:
    """A WebM of the frames (either list may be empty), each stream's timestamps made strictly increasing and the
    two interleaved in time order, as the muxer wants them."""
    out = io.BytesIO()
    with av.open(out, "w", format="webm", options={"fflags": "+bitexact"}) as container:  # no random UIDs
        queued: list[tuple[int, int, TimedFrame, av.video.stream.VideoStream | av.audio.stream.AudioStream]] = []
        if video:
            first_key = next((f.data for f in video if f.keyframe), video[0].data)
            width, height = vp8_dimensions(first_key)
            video_stream = container.add_stream("libvpx", rate=30)
            video_stream.width, video_stream.height, video_stream.pix_fmt = width, height, "yuv420p"
            video_stream.time_base = MILLISECOND
            queued += [(at, 0, frame, video_stream) for at, frame in _increasing(video)]
        if audio:
            audio_stream = container.add_stream("libopus", rate=48000)
            audio_stream.layout = "stereo"
            audio_stream.time_base = MILLISECOND
            queued += [(at, 1, frame, audio_stream) for at, frame in _increasing(audio)]
        queued.sort(key=lambda item: (item[0], item[1]))
        for at, _, frame, stream in queued:
            packet = av.Packet(frame.data)
            packet.pts = packet.dts = at
            packet.time_base = MILLISECOND
            packet.is_keyframe = frame.keyframe
            packet.stream = stream
            container.mux(packet)
    return out.getvalue()


def _increasing(frames: list[TimedFrame]) -> list[tuple[int, TimedFrame]]:
    """Each frame's time, nudged so that no two in a stream share one (the muxer refuses that)."""
    timed, last = [], -1
    for frame in frames:
        last = max(frame.at_ms, last + 1)
        timed.append((last, frame))
    return timed
