"""media.passthrough bends aiortc internals: these tests say which one moved when an aiortc upgrade breaks it.

Also the forwarding rules (media.forwarding) that need no network: keyframe gate, timestamps, sinks, backlog.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fractions
import queue
import threading
from collections.abc import Iterator
from typing import Any, cast

import av
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender, rtcrtpreceiver
from aiortc.codecs import get_capabilities
from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpSynchronizationSource
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPacket, RtcpPsfbPacket, RtpPacket

from media import passthrough
from media.forwarding import ForwardedTrack, Relay

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
OPUS_TIME_BASE = fractions.Fraction(1, 48000)


@pytest.fixture
def installed() -> Iterator[None]:
    passthrough.install()
    yield
    passthrough.uninstall()


class FakeTransport:
    """Just enough RTCDtlsTransport for a sender or receiver that is never started: it records what is sent."""

    state = "connected"
    _stats_id = "transport"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


def _vp8_frames(count: int = 3) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuv420p"
    codec.time_base, codec.bit_rate, codec.thread_count = fractions.Fraction(1, 30), 100_000, 1
    codec.options = {"deadline": "realtime", "lag-in-frames": "0"}
    frames = []
    for index in range(count):
        frame = av.VideoFrame(width=64, height=48, format="yuv420p")
        for number, plane in enumerate(frame.planes):
            plane.update(bytes([(index * 40 + number * 70) % 256]) * plane.buffer_size)
        frame.pts = index
        frames.append(b"".join(bytes(p) for p in codec.encode(frame)))
    return frames


def _packet(data: bytes, pts: int, time_base: fractions.Fraction, *, keyframe: bool = False) -> av.Packet:
    packet = av.Packet(data)
    packet.pts, packet.time_base, packet.is_keyframe = pts, time_base, keyframe
    return packet


# --- the hook installs and uninstalls cleanly ---


def test_passthrough_install_swaps_aiortc_receiver_get_decoder_and_uninstall_restores_it() -> None:
    original = rtcrtpreceiver.get_decoder
    passthrough.install()
    try:
        assert passthrough.is_installed()
        assert isinstance(rtcrtpreceiver.get_decoder(VP8), passthrough.PassthroughDecoder)
    finally:
        passthrough.uninstall()
    assert not passthrough.is_installed()
    assert rtcrtpreceiver.get_decoder is original


def test_passthrough_install_gives_audio_receivers_a_buffer_that_never_waits_and_video_aiortcs() -> None:
    original = rtcrtpreceiver.JitterBuffer
    passthrough.install()
    try:
        assert isinstance(rtcrtpreceiver.JitterBuffer(capacity=16, prefetch=4), passthrough.AudioPassthroughBuffer)
        assert isinstance(rtcrtpreceiver.JitterBuffer(capacity=512, is_video=True), JitterBuffer)
        receiver = RTCRtpReceiver("audio", cast(Any, FakeTransport()))
        assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, passthrough.AudioPassthroughBuffer)  # type: ignore[attr-defined]
    finally:
        passthrough.uninstall()
    assert rtcrtpreceiver.JitterBuffer is original


def _audio_packet(sequence: int) -> RtpPacket:
    packet = RtpPacket(payload_type=111, sequence_number=sequence, timestamp=sequence * 960)
    packet._data = bytes([sequence % 256]) * 20  # type: ignore[attr-defined]  # as aiortc's receiver depayloads
    return packet


def test_audio_passthrough_buffer_forwards_each_packet_at_once_and_drops_late_and_repeated_ones() -> None:
    buffer = passthrough.AudioPassthroughBuffer(capacity=16, prefetch=4)
    out = []
    for sequence in (65533, 65534, 65535, 0, 2, 3, 1, 3, 40, 4):  # a hole (1) that comes late, a repeat, a jump
        pli, frame = buffer.add(_audio_packet(sequence))
        assert pli is False
        out.append(None if frame is None else frame.timestamp // 960)
    # Nothing waits for the missing packet 1, which is dropped when it comes after 2 and 3; so are the repeated 3
    # and the 4 that arrives after 40.
    assert out == [65533, 65534, 65535, 0, 2, 3, None, None, 40, None]
    assert buffer.add(_audio_packet(41))[1] is not None


def test_passthrough_install_twice_then_uninstall_once_restores_aiortc() -> None:
    original = rtcrtpreceiver.get_decoder
    passthrough.install()
    passthrough.install()
    passthrough.uninstall()
    passthrough.uninstall()
    assert rtcrtpreceiver.get_decoder is original


# --- the aiortc internals it needs are there, with the expected shape ---


def test_passthrough_aiortc_internals_are_as_expected() -> None:
    passthrough.check_aiortc_internals()  # the message names the internal that changed


@pytest.mark.parametrize(
    ("target", "name", "replacement", "named"),
    [
        (rtcrtpreceiver, "get_decoder", lambda codec, options: None, "aiortc.rtcrtpreceiver.get_decoder"),
        (rtcrtpreceiver, "decoder_worker", lambda loop, q: None, "aiortc.rtcrtpreceiver.decoder_worker"),
        (rtcrtpreceiver, "JitterBuffer", lambda capacity: None, "aiortc.rtcrtpreceiver.JitterBuffer"),
        (RTCRtpReceiver, "_send_rtcp_pli", None, "aiortc.RTCRtpReceiver._send_rtcp_pli"),
        (RTCRtpSender, "_handle_rtcp_packet", lambda self, packet: None, "aiortc.RTCRtpSender._handle_rtcp_packet"),
    ],
)
def test_passthrough_check_names_the_aiortc_internal_that_changed(
    monkeypatch: pytest.MonkeyPatch, target: object, name: str, replacement: object, named: str
) -> None:
    if replacement is None:
        monkeypatch.delattr(target, name)
    else:
        monkeypatch.setattr(target, name, replacement)
    with pytest.raises(passthrough.AiortcInternalsChanged, match=named.replace(".", r"\.")):
        passthrough.install()
    assert not passthrough.is_installed()


@pytest.mark.usefixtures("installed")
async def test_aiortc_decoder_worker_hands_encoded_frames_through_unchanged() -> None:
    """Runs aiortc's own decoder thread function, as RTCRtpReceiver.receive() starts it."""
    keyframe, delta = _vp8_frames(2)
    opus = b"\xfc\x01\x02\x03"
    tasks: queue.Queue[tuple[RTCRtpCodecParameters, JitterFrame] | None] = queue.Queue()
    output: asyncio.Queue[av.Packet | None] = asyncio.Queue()
    for codec, data, timestamp in ((VP8, keyframe, 0), (VP8, delta, 3000), (OPUS, opus, 960)):
        tasks.put((codec, JitterFrame(data=data, timestamp=timestamp)))
    tasks.put(None)
    worker = threading.Thread(
        target=rtcrtpreceiver.decoder_worker, args=(asyncio.get_running_loop(), tasks, output, threading.Event())
    )
    worker.start()
    got = [await asyncio.wait_for(output.get(), 5) for _ in range(4)]
    await asyncio.to_thread(worker.join)

    assert got[3] is None, "aiortc.rtcrtpreceiver.decoder_worker no longer ends the track with None"
    packets = cast(list[av.Packet], got[:3])
    assert all(isinstance(p, av.Packet) for p in packets), (
        "aiortc.rtcrtpreceiver.decoder_worker did not use the passthrough decoder (get_decoder lookup changed?)"
    )
    assert [bytes(p) for p in packets] == [keyframe, delta, opus]
    assert [p.pts for p in packets] == [0, 3000, 960]
    assert [p.time_base for p in packets] == [VIDEO_TIME_BASE, VIDEO_TIME_BASE, OPUS_TIME_BASE]
    assert [p.is_keyframe for p in packets] == [True, False, True]


class PacketTrack(MediaStreamTrack):
    def __init__(self, kind: str, packets: list[av.Packet]) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets

    async def recv(self) -> av.Packet:
        if not self._packets:
            raise MediaStreamError
        return self._packets.pop(0)


async def test_aiortc_sender_packs_av_packets_without_encoding() -> None:
    """RTCRtpSender hands an av.Packet from track.recv() to Encoder.pack(): payloads are the bytes, re-packetised."""
    frame = _vp8_frames(1)[0] + bytes(3000)  # more than one RTP packet holds (1300 bytes)
    sender = RTCRtpSender(PacketTrack("video", [_packet(frame, 6000, VIDEO_TIME_BASE)]), cast(Any, FakeTransport()))
    encoded = await sender._next_encoded_frame(VP8)
    assert encoded is not None, "aiortc.RTCRtpSender._next_encoded_frame dropped an av.Packet"
    assert len(encoded.payloads) > 1
    assert b"".join(vp8_depayload(p) for p in encoded.payloads) == frame, "aiortc's Vp8Encoder.pack changed the bytes"
    assert encoded.timestamp == 6000

    sender = RTCRtpSender(
        PacketTrack("audio", [_packet(b"\xfc\x01\x02", 1920, OPUS_TIME_BASE)]), cast(Any, FakeTransport())
    )
    encoded = await sender._next_encoded_frame(OPUS)
    assert encoded is not None
    assert (encoded.payloads, encoded.timestamp) == ([b"\xfc\x01\x02"], 1920), "aiortc's OpusEncoder.pack changed"


async def test_on_keyframe_request_sees_pli_and_fir_only_and_unhooks() -> None:
    sender = RTCRtpSender("video", cast(Any, FakeTransport()))
    requests: list[str] = []

    async def handler() -> None:
        requests.append("keyframe")

    unhook = passthrough.on_keyframe_request(sender, handler)
    for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR, RTCP_PSFB_APP):
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    assert requests == ["keyframe", "keyframe"]

    unhook()
    assert "_handle_rtcp_packet" not in vars(sender)
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
    assert requests == ["keyframe", "keyframe"]


async def test_on_keyframe_request_keeps_a_failing_handler_out_of_aiortc() -> None:
    sender = RTCRtpSender("video", cast(Any, FakeTransport()))

    async def handler() -> None:
        raise RuntimeError("boom")

    passthrough.on_keyframe_request(sender, handler)
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))


async def test_request_keyframe_sends_a_pli_for_the_ssrc_the_receiver_heard() -> None:
    transport = FakeTransport()
    receiver = RTCRtpReceiver("video", cast(Any, transport))
    receiver._set_rtcp_ssrc(1111)
    assert not await passthrough.request_keyframe(receiver)  # nothing heard yet

    await receiver._handle_rtp_packet(RtpPacket(payload_type=97, ssrc=4242), arrival_time_ms=0)
    assert await passthrough.request_keyframe(receiver)
    [pli] = RtcpPacket.parse(transport.sent[-1])
    assert isinstance(pli, RtcpPsfbPacket), "aiortc.RTCRtpReceiver._send_rtcp_pli no longer sends a PSFB packet"
    assert (pli.fmt, pli.ssrc, pli.media_ssrc) == (RTCP_PSFB_PLI, 1111, 4242)


def test_is_vp8_keyframe_tells_key_from_delta_frames() -> None:
    keyframe, delta, _ = _vp8_frames(3)
    assert passthrough.is_vp8_keyframe(keyframe)
    assert not passthrough.is_vp8_keyframe(delta)
    assert not passthrough.is_vp8_keyframe(b"")


def test_passthrough_codecs_are_offered_by_aiortc() -> None:
    assert {"video/VP8", "video/rtx"} <= {c.mimeType for c in get_capabilities("video").codecs}
    assert "audio/opus" in {c.mimeType for c in get_capabilities("audio").codecs}


# --- forwarding rules ---


class FakeReceiver:
    """An RTCRtpReceiver as a Relay sees it: a track of packets, its sources, a PLI it can send, stop()."""

    def __init__(self, kind: str) -> None:
        self.track = QueueTrack(kind)
        self.plis: list[int] = []

    def getSynchronizationSources(self) -> list[RTCRtpSynchronizationSource]:
        return [RTCRtpSynchronizationSource(timestamp=dt.datetime.now(dt.UTC), source=77)]

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)

    async def stop(self) -> None:
        self.track.feed(None)


class QueueTrack(MediaStreamTrack):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()

    def feed(self, packet: av.Packet | None) -> None:
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet


def _relay(kind: str, **options: Any) -> tuple[Relay, FakeReceiver]:
    receiver = FakeReceiver(kind)
    relay = Relay(cast(RTCRtpReceiver, receiver), **options)
    relay.start()
    return relay, receiver


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _drain(track: ForwardedTrack) -> list[av.Packet]:
    packets = []
    while not track._queue.empty():
        packets.append(await track.recv())
    return packets


async def test_forwarded_video_starts_at_a_keyframe_which_the_relay_asks_for() -> None:
    relay, receiver = _relay("video")
    out = ForwardedTrack("video")
    relay.add_output(out)
    receiver.track.feed(_packet(b"delta-1", 0, VIDEO_TIME_BASE))
    receiver.track.feed(_packet(b"key", 3000, VIDEO_TIME_BASE, keyframe=True))
    receiver.track.feed(_packet(b"delta-2", 6000, VIDEO_TIME_BASE))
    await _settle()
    assert [bytes(p) for p in await _drain(out)] == [b"key", b"delta-2"]
    assert receiver.plis == [77]
    await relay.stop()
    assert out.source is None
    assert out.readyState == "live"


async def test_forwarded_track_keeps_timestamps_going_when_its_source_changes() -> None:
    first, first_receiver = _relay("audio")
    second, second_receiver = _relay("audio")
    out = ForwardedTrack("audio")
    first.add_output(out)
    first_receiver.track.feed(_packet(b"a1", 48000, OPUS_TIME_BASE))
    await _settle()
    second.add_output(out)  # the participant reconnected: a new receiver, timestamps from 0 again
    await asyncio.sleep(0.05)
    second_receiver.track.feed(_packet(b"b1", 0, OPUS_TIME_BASE))
    second_receiver.track.feed(_packet(b"b2", 960, OPUS_TIME_BASE))
    first_receiver.track.feed(_packet(b"a2", 48960, OPUS_TIME_BASE))  # the old source is no longer forwarded
    await _settle()
    a1, b1, b2 = await _drain(out)
    assert [bytes(p) for p in (a1, b1, b2)] == [b"a1", b"b1", b"b2"]
    assert b1.pts is not None
    assert b2.pts is not None
    assert 48000 + 0.05 * 48000 <= b1.pts < 48000 + 5 * 48000  # after a1, by about the time that passed
    assert b2.pts - b1.pts == 960
    await first.stop()
    await second.stop()


async def test_relay_offers_every_frame_to_sinks_and_survives_a_failing_one() -> None:
    relay, receiver = _relay("audio")
    seen: list[bytes] = []

    def failing(packet: av.Packet) -> None:
        raise RuntimeError("recorder down")

    relay.add_sink(failing)
    relay.add_sink(lambda packet: seen.append(bytes(packet)))
    out = ForwardedTrack("audio")
    relay.add_output(out)
    for number in range(3):
        receiver.track.feed(_packet(bytes([number]), number * 960, OPUS_TIME_BASE))
    await _settle()
    assert seen == [b"\x00", b"\x01", b"\x02"]
    assert len(await _drain(out)) == 3
    await relay.stop()


async def test_forwarded_video_drops_a_backlog_and_restarts_at_a_keyframe() -> None:
    relay, receiver = _relay("video", keyframe_request_interval=0)
    out = ForwardedTrack("video", queue_frames=2)
    relay.add_output(out)
    receiver.track.feed(_packet(b"key-1", 0, VIDEO_TIME_BASE, keyframe=True))
    for number in (1, 2):  # nobody sends: delta-2 finds the queue full
        receiver.track.feed(_packet(b"delta-%d" % number, number * 3000, VIDEO_TIME_BASE))
    receiver.track.feed(_packet(b"key-2", 9000, VIDEO_TIME_BASE, keyframe=True))
    await _settle()
    assert [bytes(p) for p in await _drain(out)] == [b"key-2"]
    assert len(receiver.plis) == 2  # one to start, one after the backlog was dropped
    await relay.stop()


async def test_forwarded_track_stop_ends_recv_and_leaves_the_relay() -> None:
    relay, _ = _relay("video")
    out = ForwardedTrack("video")
    relay.add_output(out)
    pending = asyncio.create_task(out.recv())
    await _settle()
    out.stop()
    with pytest.raises(MediaStreamError):
        await pending
    assert relay.outputs == ()
    relay.add_output(out)  # an ended track (a slot nobody reads) is never fed again, nor asks for keyframes
    assert relay.outputs == ()
    assert out.source is None
    await relay.stop()
