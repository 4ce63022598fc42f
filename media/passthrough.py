"""Encoded passthrough for aiortc: receive encoded frames instead of decoded pictures, relay keyframe requests.

aiortc always decodes what an RTCRtpReceiver receives and encodes what an RTCRtpSender sends. The server only
forwards media, so this module bends aiortc at four private places, all in aiortc 1.16 (pinned `<1.17`;
`check_aiortc_internals()` fails loudly, naming the internal, if an upgrade moves one of them):

1. `aiortc.rtcrtpreceiver.get_decoder(codec)`: the module global that `decoder_worker` (the receiver's
   decoder thread) calls to get a `Decoder` for each codec. `install()` replaces it, process-wide, with one
   that returns a `PassthroughDecoder`: `decode(JitterFrame)` answers the reassembled encoded frame (the VP8
   bitstream without its RTP payload descriptor; the Opus packet) as one `av.Packet` with `pts` = the
   frame's RTP timestamp (counted from the stream's first frame) and `time_base` = 1/clock rate. So
   `RemoteStreamTrack.recv()` returns `av.Packet`s, and handing those to an outgoing track makes
   `RTCRtpSender` call `Encoder.pack(packet)` (re-packetise, no encoding) instead of `Encoder.encode(frame)`.
2. `RTCRtpSender._handle_rtcp_packet(packet)`: called by the DTLS transport's RTP router for every RTCP
   packet addressed to the sender. `on_keyframe_request()` wraps it on one sender instance to see PLI and FIR:
   aiortc itself would only set a "force keyframe" flag that `pack()` ignores.
3. `RTCRtpReceiver._send_rtcp_pli(media_ssrc)`: `request_keyframe()` sends a PLI upstream for every SSRC the
   receiver has heard in the last 10 s (`getSynchronizationSources()`, public).
4. `aiortc.rtcrtpreceiver.JitterBuffer`: the module global an audio receiver builds its jitter buffer from.
   aiortc's audio buffer (16 packets, prefetch 4) stalls at every missing packet and, when it overflows, throws
   away the good packets before the hole too: 2.6% packets lost became 14.8% of audio frames lost through the
   server (bench: `python -m bench.loss`). A forwarder needs no jitter buffer for audio: each Opus packet is a
   whole frame and the browser's own buffer conceals what is missing. `install()` gives audio receivers an
   `AudioPassthroughBuffer` (each packet on at once, late and repeated ones dropped); video keeps aiortc's,
   which reassembles frames and asks for retransmissions (NACK).

Everything else here is public aiortc or PyAV API.
"""

from __future__ import annotations

import fractions
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import av
import structlog
from aiortc import RTCRtpReceiver, RTCRtpSender, rtcrtpreceiver
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, AnyRtcpPacket, RtcpPsfbPacket, RtpPacket

log = structlog.get_logger("telemed.media")

KeyframeRequestHandler = Callable[[], Awaitable[None]]

_VP8_KEYFRAME_START_CODE = b"\x9d\x01\x2a"
_lock = threading.Lock()
_original_get_decoder: Callable[..., Decoder] | None = None
_original_jitter_buffer: type[JitterBuffer] | None = None


class AiortcInternalsChanged(RuntimeError):
    """An aiortc internal that media.passthrough relies on is gone or has changed shape."""


def is_vp8_keyframe(data: bytes) -> bool:
    """Whether a VP8 frame is a key frame (RFC 6386 9.1: P bit clear, then the start code)."""
    return len(data) >= 10 and not data[0] & 0x01 and data[3:6] == _VP8_KEYFRAME_START_CODE


class PassthroughDecoder(Decoder):
    """A stand-in for aiortc's decoders: hands the encoded frame on, unchanged, as an `av.Packet`."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.mime_type = codec.mimeType.lower()
        self.time_base = fractions.Fraction(1, codec.clockRate)

    def decode(self, encoded_frame: JitterFrame) -> list[av.Packet]:  # type: ignore[override]  # Packets, not Frames: the point
        """One encoded frame in, the same bytes out, timed in the codec's clock."""
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = self.time_base
        if self.mime_type == "video/vp8":
            packet.is_keyframe = is_vp8_keyframe(encoded_frame.data)
        else:
            packet.is_keyframe = self.mime_type.startswith("audio/")  # every audio packet stands alone
        return [packet]


def _get_passthrough_decoder(codec: RTCRtpCodecParameters) -> Decoder:
    return PassthroughDecoder(codec)


class AudioPassthroughBuffer:
    """Stands in for aiortc's audio JitterBuffer: every packet that is newer than the last one is a frame, at once.

    Nothing waits for a missing packet, so a loss upstream costs exactly the packets lost: never the ones around
    them. Packets arriving after a newer one (reordered beyond repair, or repeated) are dropped; the browser's
    jitter buffer handles timing and concealment.
    """

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        self.capacity = capacity
        self._last: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._last is not None and not 0 < (sequence - self._last) % 65536 < 32768:
            return False, None
        self._last = sequence
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]  # the depayloaded payload aiortc stored


def _passthrough_jitter_buffer(capacity: int, prefetch: int = 0,
                               is_video: bool = False) -> JitterBuffer | AudioPassthroughBuffer:
    if is_video or _original_jitter_buffer is None:
        return (_original_jitter_buffer or JitterBuffer)(capacity=capacity, prefetch=prefetch, is_video=is_video)
    return AudioPassthroughBuffer(capacity=capacity, prefetch=prefetch, is_video=is_video)


def install() -> None:
    """Make every RTCRtpReceiver in this process deliver encoded frames (`av.Packet`s) instead of decoding.

    Call before a receiver's first frame: its decoder thread picks the decoder then. Idempotent.
    """
    global _original_get_decoder, _original_jitter_buffer
    check_aiortc_internals()
    with _lock:
        if _original_get_decoder is None:
            _original_get_decoder = rtcrtpreceiver.get_decoder
            rtcrtpreceiver.get_decoder = _get_passthrough_decoder
        if _original_jitter_buffer is None:
            _original_jitter_buffer = rtcrtpreceiver.JitterBuffer
            rtcrtpreceiver.JitterBuffer = _passthrough_jitter_buffer  # type: ignore[misc,assignment]


def uninstall() -> None:
    """Give aiortc its own decoders back (for receivers that have not yet picked one). Idempotent."""
    global _original_get_decoder, _original_jitter_buffer
    with _lock:
        if _original_get_decoder is not None:
            rtcrtpreceiver.get_decoder = _original_get_decoder
            _original_get_decoder = None
        if _original_jitter_buffer is not None:
            rtcrtpreceiver.JitterBuffer = _original_jitter_buffer  # type: ignore[misc]
            _original_jitter_buffer = None


def is_installed() -> bool:
    """Whether receivers in this process currently get the passthrough decoder."""
    return rtcrtpreceiver.get_decoder is _get_passthrough_decoder


def on_keyframe_request(sender: RTCRtpSender, handler: KeyframeRequestHandler) -> Callable[[], None]:
    """Await `handler()` whenever `sender`'s remote asks for a keyframe (RTCP PLI or FIR); returns the unhook.

    aiortc's own handling (a flag its encoder would read) still runs, so NACK, REMB and reports are untouched.
    A failing handler is logged, never raised into aiortc's RTCP loop. Hooks stack; unhook in reverse order.
    """
    original = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            try:
                await handler()
            except Exception:
                log.exception("keyframe_request_handler_failed", kind=sender.kind)
        await original(packet)

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]  # per-instance hook, see module doc

    def unhook() -> None:
        if sender.__dict__.get("_handle_rtcp_packet") is handle_rtcp_packet:
            del sender._handle_rtcp_packet

    return unhook


RtpTap = Callable[[RtpPacket], None]
RtcpTap = Callable[[AnyRtcpPacket], None]


def tap_receiver(receiver: RTCRtpReceiver, on_rtp: RtpTap, on_rtcp: RtcpTap) -> Callable[[], None]:
    """Show every RTP and RTCP packet routed to `receiver` (SRTP already removed, RTX not yet unwrapped) to the
    taps before aiortc handles it; returns the untap. The recorder captures packets here, as they arrived, so
    that reordering, retransmissions and loss are handled offline with the whole stream at hand.

    A failing tap is logged, never raised into aiortc's packet handling. One tap per receiver.
    """
    original_rtp, original_rtcp = receiver._handle_rtp_packet, receiver._handle_rtcp_packet

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        try:
            on_rtp(packet)
        except Exception:
            log.exception("rtp_tap_failed")
        await original_rtp(packet, arrival_time_ms)

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        try:
            on_rtcp(packet)
        except Exception:
            log.exception("rtcp_tap_failed")
        await original_rtcp(packet)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]  # per-instance hook
    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]

    def untap() -> None:
        if receiver.__dict__.get("_handle_rtp_packet") is handle_rtp_packet:
            del receiver._handle_rtp_packet
        if receiver.__dict__.get("_handle_rtcp_packet") is handle_rtcp_packet:
            del receiver._handle_rtcp_packet

    return untap


def receiver_codecs(receiver: RTCRtpReceiver) -> list[RTCRtpCodecParameters]:
    """The codecs `receiver` was started with (payload types, clock rates, RTX `apt`s): what a capture needs to
    decode its packets later."""
    return list(getattr(receiver, "_RTCRtpReceiver__codecs", {}).values())


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Ask the remote sender of `receiver`'s media for a keyframe (RTCP PLI); False if nothing was heard yet."""
    sources = [source.source for source in receiver.getSynchronizationSources()]
    for ssrc in sources:
        await receiver._send_rtcp_pli(ssrc)
    return bool(sources)


def _expect(condition: bool, internal: str, expected: str) -> None:
    if not condition:
        raise AiortcInternalsChanged(
            f"media.passthrough relies on aiortc internal {internal}, which is gone or changed: expected {expected}."
            " Check aiortc's rtcrtpreceiver.py / rtcrtpsender.py and adapt media/passthrough.py."
        )


def _parameters(function: Any) -> list[str]:
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return []


def check_aiortc_internals() -> None:
    """Raise AiortcInternalsChanged, naming the internal, if this aiortc is not shaped as the hooks need."""
    worker = getattr(rtcrtpreceiver, "decoder_worker", None)
    _expect(
        callable(worker) and _parameters(worker) == ["loop", "input_q", "output_q", "decode_error"],
        "aiortc.rtcrtpreceiver.decoder_worker",
        "decoder_worker(loop, input_q, output_q, decode_error), the receiver's decoder thread",
    )
    _expect(
        getattr(getattr(worker, "__code__", None), "co_names", ()).count("get_decoder") > 0
        and getattr(worker, "__globals__", None) is vars(rtcrtpreceiver),
        "aiortc.rtcrtpreceiver.decoder_worker",
        "it looks up the module global get_decoder for each codec",
    )
    get_decoder = getattr(rtcrtpreceiver, "get_decoder", None)
    _expect(
        callable(get_decoder) and _parameters(get_decoder) == ["codec"],
        "aiortc.rtcrtpreceiver.get_decoder",
        "a module global get_decoder(codec) -> Decoder",
    )
    _expect(
        _parameters(getattr(Decoder, "decode", None)) == ["self", "encoded_frame"],
        "aiortc.codecs.base.Decoder.decode",
        "Decoder.decode(self, encoded_frame: JitterFrame) -> list",
    )
    _expect(
        "JitterBuffer" in getattr(getattr(RTCRtpReceiver.__init__, "__code__", None), "co_names", ())
        and getattr(rtcrtpreceiver, "JitterBuffer", None) in (JitterBuffer, _passthrough_jitter_buffer)
        and _parameters(JitterBuffer) == ["capacity", "prefetch", "is_video"]
        and _parameters(JitterBuffer.add) == ["self", "packet"],
        "aiortc.rtcrtpreceiver.JitterBuffer",
        "a module global JitterBuffer(capacity, prefetch, is_video) built in RTCRtpReceiver.__init__, whose"
        " add(packet) returns (pli_flag, JitterFrame | None)",
    )
    _expect(
        _parameters(JitterFrame) == ["data", "timestamp"],
        "aiortc.jitterbuffer.JitterFrame",
        "JitterFrame(data: bytes, timestamp: int)",
    )
    _expect(
        inspect.iscoroutinefunction(getattr(RTCRtpSender, "_handle_rtcp_packet", None))
        and _parameters(RTCRtpSender._handle_rtcp_packet) == ["self", "packet"],
        "aiortc.RTCRtpSender._handle_rtcp_packet",
        "async _handle_rtcp_packet(self, packet), called for each RTCP packet routed to the sender",
    )
    _expect(
        inspect.iscoroutinefunction(getattr(RTCRtpReceiver, "_send_rtcp_pli", None))
        and _parameters(RTCRtpReceiver._send_rtcp_pli) == ["self", "media_ssrc"],
        "aiortc.RTCRtpReceiver._send_rtcp_pli",
        "async _send_rtcp_pli(self, media_ssrc)",
    )
    _expect(
        inspect.iscoroutinefunction(getattr(RTCRtpReceiver, "_handle_rtp_packet", None))
        and _parameters(RTCRtpReceiver._handle_rtp_packet) == ["self", "packet", "arrival_time_ms"]
        and inspect.iscoroutinefunction(getattr(RTCRtpReceiver, "_handle_rtcp_packet", None))
        and _parameters(RTCRtpReceiver._handle_rtcp_packet) == ["self", "packet"],
        "aiortc.RTCRtpReceiver._handle_rtp_packet / _handle_rtcp_packet",
        "async _handle_rtp_packet(self, packet, arrival_time_ms) and async _handle_rtcp_packet(self, packet),"
        " looked up on the receiver for each packet routed to it",
    )
    _expect(
        "_RTCRtpReceiver__codecs" in getattr(getattr(RTCRtpReceiver.__init__, "__code__", None), "co_names", ()),
        "aiortc.RTCRtpReceiver.__codecs",
        "a dict of the receiver's RTCRtpCodecParameters by payload type, filled by receive()",
    )
