"""Recordings made of synthetic packets by the live capture code, for tests that need one without a call."""

from __future__ import annotations

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket, RtpPacket

from media.recording.capture import RecordingSpec, TrackCapture, write_end_marker
from media.recording.packets import NTP_EPOCH_OFFSET
from media.recording.storage import BackgroundWriter, RecordingStorage

OPUS = [{"payload_type": 111, "mime_type": "audio/opus", "clock_rate": 48000, "channels": 2, "parameters": {}}]
VP8 = [{"payload_type": 96, "mime_type": "video/VP8", "clock_rate": 90000, "channels": None, "parameters": {}},
       {"payload_type": 97, "mime_type": "video/rtx", "clock_rate": 90000, "channels": None,
        "parameters": {"apt": 96}}]
KEYFRAME = b"\x10\x00\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00" + bytes(200)  # descriptor S=1; 320x240 keyframe
DELTA = b"\x10\x01\x00\x00" + bytes(600)  # ~100 kB per 10-second segment: two chunks
START = 1_800_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def write_recording(storage: RecordingStorage, spec: RecordingSpec, seconds: float, *,
                    stop: bool = True, video_reports: tuple[tuple[int, float], ...] = ()) -> dict[str, int]:
    """Both participants' audio (20 ms Opus packets) and the physician's video (VP8 at ~17 fps, a keyframe every
    50 frames), `seconds` long, in `spec.segment_seconds` segments; returns each track's last segment index.
    Without `stop` the segments being written are left as a crash leaves them. `video_reports` are RTCP sender
    reports (RTP timestamp, sender's wall-clock seconds) the video's sender sent before its first packet."""
    clock = FakeClock()
    writer = BackgroundWriter()
    tracks = {name: TrackCapture(spec=spec, storage=storage, writer=writer, track=name, kind=name.split(".")[1],
                                 codecs=(lambda c=codecs: c), clock=clock)
              for name, codecs in (("physician.audio.0", OPUS), ("patient.audio.0", OPUS),
                                   ("physician.video.0", VP8))}
    for rtp_time, wall in video_reports:
        tracks["physician.video.0"].rtcp(RtcpSrPacket(ssrc=3, sender_info=RtcpSenderInfo(
            ntp_timestamp=int((wall + NTP_EPOCH_OFFSET) * 2**32), rtp_timestamp=rtp_time, packet_count=0,
            octet_count=0)))
    for step in range(int(seconds * 50)):  # a 20 ms tick
        clock.now = START + step * 0.02
        for name in ("physician.audio.0", "patient.audio.0"):
            tracks[name].rtp(RtpPacket(payload_type=111, sequence_number=step & 0xFFFF, timestamp=step * 960,
                                       ssrc=1 if name.startswith("physician") else 2,
                                       payload=b"\xfc" + step.to_bytes(4, "big")))
        if step % 3 == 0:
            frame = step // 3
            tracks["physician.video.0"].rtp(RtpPacket(
                payload_type=96, sequence_number=frame, timestamp=frame * 5400, ssrc=3, marker=1,
                payload=(KEYFRAME if frame % 50 == 0 else DELTA) + frame.to_bytes(4, "big")))
    last = {name: capture.index for name, capture in tracks.items()}
    if stop:
        for capture in tracks.values():
            capture.close()
        writer.call(lambda: write_end_marker(storage, spec, {"reason": "ended", "stopped_at": clock.now,
                                                             "tracks": last}))
    writer.drain()
    writer.stop()
    return last
