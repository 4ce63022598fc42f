"""Two aiortc clients and the server's two peers, all on 127.0.0.1: media is forwarded encoded, byte for byte.

Keeping media on loopback: aioice leaves 127.0.0.1 out of its host candidates; the `loopback_only` fixture applies
media.loopback's pin (127.0.0.1 only, other addresses neither contacted nor answered) for the test, and the test
checks that every candidate in every SDP is 127.0.0.1. With no ICE servers (aiortc's default is a public STUN
server) there are no other candidates, and sockets bound to 127.0.0.1 cannot reach any other address.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack

from media import loopback, passthrough
from media.forwarding import PASSTHROUGH_MIME_TYPES, ForwardedTrack, FrameSink, Relay, add_passthrough_transceiver

pytestmark = pytest.mark.slow

WIDTH, HEIGHT, FPS = 320, 240, 15
AUDIO_RATE, AUDIO_SAMPLES = 48000, 960  # 20 ms Opus packets
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
TIMEOUT = 10.0


@dataclass(frozen=True)
class Sent:
    data: bytes
    pts: int
    keyframe: bool
    forced: bool = False
    at: float = field(default_factory=time.time)  # when it was handed to the sender (capture time, in effect)


@dataclass(frozen=True)
class Received:
    data: bytes
    pts: int
    keyframe: bool


class Vp8Source(MediaStreamTrack):
    """A camera stand-in: encodes a moving test pattern with PyAV's libvpx and sends the packets as they are."""

    kind = "video"

    def __init__(self, shade: int) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.keyframe_requests = 0
        self._shade = shade
        self._force_keyframe = False
        self._index = 0
        self._start: float | None = None
        self._codec = av.CodecContext.create("libvpx", "w")
        self._codec.width, self._codec.height, self._codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        self._codec.time_base = fractions.Fraction(1, FPS)
        self._codec.bit_rate = 300_000
        self._codec.gop_size = 100_000  # keyframes only when asked: the relay test counts on it
        self._codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        self._codec.thread_count = 1  # libvpx with threads here is ~100x slower for 320x240 (aiortc uses 1 too)

    async def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._force_keyframe = True

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            index = await _pace(self, FPS)
            frame = _test_pattern(index, self._shade)
            frame.pts = index
            forced, self._force_keyframe = self._force_keyframe, False
            if forced:
                frame.pict_type = av.video.frame.PictureType.I
            data = b"".join(bytes(p) for p in self._codec.encode(frame))
            if data:
                pts = index * 90000 // FPS
                self.sent.append(Sent(data, pts, passthrough.is_vp8_keyframe(data), forced))
                return _packet(data, pts, VIDEO_TIME_BASE)


class OpusSource(MediaStreamTrack):
    """A microphone stand-in: a changing tone encoded with PyAV's libopus, sent as the encoder's packets."""

    kind = "audio"

    def __init__(self, pitch: float) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self._pitch = pitch
        self._index = 0
        self._start: float | None = None
        self._pts = 0
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate, self._codec.layout, self._codec.format = AUDIO_RATE, "stereo", "s16"
        self._codec.bit_rate = 64_000
        self._codec.time_base = AUDIO_TIME_BASE

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            index = await _pace(self, AUDIO_RATE / AUDIO_SAMPLES)
            frame = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_SAMPLES)
            step = self._pitch * (1 + (index % 50) / 50) * 2 * math.pi / AUDIO_RATE
            samples = [int(6000 * math.sin((index * AUDIO_SAMPLES + n) * step)) for n in range(AUDIO_SAMPLES)]
            frame.planes[0].update(struct.pack(f"<{2 * AUDIO_SAMPLES}h", *(s for s in samples for _ in (0, 1))))
            frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, index * AUDIO_SAMPLES, AUDIO_TIME_BASE
            packets = [bytes(p) for p in self._codec.encode(frame)]
            if packets:
                data = packets[0]  # one 20 ms frame in, at most one packet out
                pts, self._pts = self._pts, self._pts + AUDIO_SAMPLES
                self.sent.append(Sent(data, pts, keyframe=True))
                return _packet(data, pts, AUDIO_TIME_BASE)


async def _pace(source: Vp8Source | OpusSource, rate: float) -> int:
    """Real time: the index of the frame due now, after sleeping until it is."""
    loop = asyncio.get_running_loop()
    if source._start is None:
        source._start = loop.time()
    index = source._index
    source._index += 1
    await asyncio.sleep(max(0.0, source._start + index / rate - loop.time()))
    return index


_RAMP = bytes(range(256)) * 4


def _test_pattern(index: int, shade: int) -> av.VideoFrame:
    frame = av.VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
    luma = frame.planes[0]
    rows = []
    for row in range(HEIGHT):
        start = (row + 4 * index) % 256
        rows.append(_RAMP[start : start + WIDTH].ljust(luma.line_size, b"\0"))
    luma.update(b"".join(rows))
    for plane in frame.planes[1:]:
        plane.update(bytes([shade]) * plane.buffer_size)
    return frame


def _packet(data: bytes, pts: int, time_base: fractions.Fraction) -> av.Packet:
    packet = av.Packet(data)
    packet.pts, packet.time_base = pts, time_base
    return packet


@dataclass
class Client:
    """One participant's browser, played by aiortc with the passthrough decoder, so it sees encoded frames."""

    pc: RTCPeerConnection
    video: Vp8Source
    audio: OpusSource
    transceivers: dict[str, RTCRtpTransceiver] = field(default_factory=dict)
    received: dict[str, list[Received]] = field(default_factory=lambda: {"video": [], "audio": []})
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start_receiving(self) -> None:
        for kind, transceiver in self.transceivers.items():
            track = transceiver.receiver.track
            self.tasks.append(asyncio.create_task(_collect(track, self.received[kind])))


def _client(shade: int, pitch: float, configuration: RTCConfiguration | None = None) -> Client:
    client = Client(RTCPeerConnection(configuration or RTCConfiguration(iceServers=[])), Vp8Source(shade),
                    OpusSource(pitch))
    for source in (client.video, client.audio):
        transceiver = client.pc.addTransceiver(source, direction="sendrecv")
        capabilities = RTCRtpSender.getCapabilities(source.kind).codecs
        transceiver.setCodecPreferences([c for c in capabilities if c.mimeType in PASSTHROUGH_MIME_TYPES[source.kind]])
        client.transceivers[source.kind] = transceiver
    passthrough.on_keyframe_request(client.transceivers["video"].sender, client.video.request_keyframe)
    return client


async def join_call(call: Any, client: Client, peer_id: str, role: str) -> None:
    """The client joins a `media.calls.MediaCall` as a browser would (its offer, the call's answer) and starts
    collecting what it receives."""
    await call.add_peer(peer_id, role)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    answer = await call.answer(peer_id, client.pc.localDescription.sdp)
    await client.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    client.start_receiving()


async def _collect(track: MediaStreamTrack, into: list[Received]) -> None:
    try:
        while True:
            packet = await track.recv()
            assert isinstance(packet, av.Packet), "the client decoded: the passthrough decoder is not installed"
            assert packet.pts is not None
            into.append(Received(bytes(packet), packet.pts, packet.is_keyframe))
    except MediaStreamError:
        pass


async def _negotiate(client: RTCPeerConnection, server: RTCPeerConnection) -> list[str]:
    """Offer from the client (as a browser does), answer from the server; the candidate addresses used."""
    await client.setLocalDescription(await client.createOffer())
    await server.setRemoteDescription(client.localDescription)
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    return [
        line.split()[4]
        for description in (client.localDescription, server.localDescription)
        for line in description.sdp.splitlines()
        if line.startswith("a=candidate:")
    ]


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():  # noqa: ASYNC110  # conditions on aiortc's state and other tasks' lists: poll
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out after {TIMEOUT} s waiting for {what}")


def _recorder(frames: list[bytes]) -> FrameSink:
    """A frame sink, as the recorder will register one."""
    return lambda packet: frames.append(bytes(packet))


def _match(received: list[Received], sent: list[Sent]) -> list[int]:
    """Indexes into `sent` of the received frames, in order; fails unless each is byte-identical to one sent."""
    indexes: list[int] = []
    position = 0
    for number, frame in enumerate(received):
        while position < len(sent) and sent[position].data != frame.data:
            position += 1
        assert position < len(sent), f"received frame {number} ({len(frame.data)} bytes) matches no frame sent"
        indexes.append(position)
        position += 1
    return indexes


def _assert_forwarded_unchanged(received: list[Received], sent: list[Sent], *, minimum: int) -> None:
    assert len(received) >= minimum
    indexes = _match(received, sent)
    first = indexes[0]
    for frame, index in zip(received, indexes, strict=True):
        # RTP timestamps restart at 0 at each receiver; the spacing of frames survives both hops unchanged.
        assert frame.pts - received[0].pts == sent[index].pts - sent[first].pts
        assert frame.keyframe == sent[index].keyframe
    assert indexes[-1] - first + 1 - len(indexes) <= len(indexes) // 10, "more than 10% of frames lost on loopback"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE on 127.0.0.1 only (aioice never offers it by itself); see the module docstring."""
    for target, name, replacement in loopback.patches():
        monkeypatch.setattr(target, name, replacement)


@pytest.fixture
def passthrough_installed() -> Iterator[None]:
    passthrough.install()
    yield
    passthrough.uninstall()


@pytest.mark.usefixtures("loopback_only", "passthrough_installed")
async def test_media_passthrough_forwards_frames_byte_identical_and_relays_keyframe_requests() -> None:
    tasks_before = asyncio.all_tasks()
    loop_errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
    a, b = _client(shade=90, pitch=330.0), _client(shade=170, pitch=440.0)
    server_a, server_b = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    outputs = {(pc, kind): ForwardedTrack(kind) for pc in (server_a, server_b) for kind in ("video", "audio")}
    transceivers = {key: add_passthrough_transceiver(key[0], track) for key, track in outputs.items()}
    server_b_video_requests: list[None] = []

    async def count_server_b_request() -> None:
        server_b_video_requests.append(None)

    passthrough.on_keyframe_request(transceivers[server_b, "video"].sender, count_server_b_request)
    relays: list[Relay] = []
    recorded: dict[tuple[str, str], list[bytes]] = {}
    try:
        addresses = await _negotiate(a.pc, server_a) + await _negotiate(b.pc, server_b)
        assert addresses
        assert set(addresses) == {"127.0.0.1"}

        # The server forwards A's tracks to B and B's to A, and offers every frame to a sink (the recorder).
        for source, target, name in ((server_a, server_b, "a"), (server_b, server_a, "b")):
            for kind in ("video", "audio"):
                relay = Relay(transceivers[source, kind].receiver)
                relay.add_sink(_recorder(recorded.setdefault((name, kind), [])))
                relay.start()
                relay.add_output(outputs[target, kind])
                relays.append(relay)
        a.start_receiving()
        b.start_receiving()

        peers = (a.pc, b.pc, server_a, server_b)
        await _until(lambda: all(pc.connectionState == "connected" for pc in peers), "all peers connected")
        await _until(
            lambda: all(len(c.received["video"]) >= 20 and len(c.received["audio"]) >= 40 for c in (a, b)),
            "20 video and 40 audio frames at each client",
        )

        # B's browser loses a picture: its PLI reaches the server's sender for B, the server asks A, A obliges.
        requests_before, b_frames_before = a.video.keyframe_requests, len(b.received["video"])
        assert await passthrough.request_keyframe(b.transceivers["video"].receiver)
        await _until(lambda: bool(server_b_video_requests), "the server's sender for B to get B's PLI")
        await _until(lambda: a.video.keyframe_requests > requests_before, "A's sender to get a keyframe request")

        def b_got_a_forced_keyframe() -> bool:
            forced = {s.data for s in a.video.sent if s.forced}
            return any(r.keyframe and r.data in forced for r in b.received["video"][b_frames_before:])

        await _until(b_got_a_forced_keyframe, "B to receive the keyframe A encoded on request")
    finally:
        for pc in (a.pc, b.pc, server_a, server_b):
            await pc.close()
        for relay in relays:
            await relay.stop()
        await asyncio.gather(*a.tasks, *b.tasks)

    for sender, receiver, name in ((a, b, "a"), (b, a, "b")):
        _assert_forwarded_unchanged(receiver.received["video"], sender.video.sent, minimum=20)
        _assert_forwarded_unchanged(receiver.received["audio"], sender.audio.sent, minimum=40)
        for kind in ("video", "audio"):
            forwarded = [frame.data for frame in receiver.received[kind]]
            assert set(forwarded) <= set(recorded[name, kind]), f"the sink missed {kind} frames the peer got"
    assert b.received["video"][0].keyframe, "B's first video frame is a keyframe: the relay waits for one"

    await _until(lambda: asyncio.all_tasks() <= tasks_before | {asyncio.current_task()}, "aiortc's tasks to end")
    assert not [t for t in threading.enumerate() if t.name.endswith("-decoder")]
    asyncio.get_running_loop().set_exception_handler(None)
    assert not loop_errors, "unhandled errors in the event loop"
