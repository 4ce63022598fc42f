"""Forwarding encoded media between server peers: one Relay per received track, fanned out to ForwardedTracks.

Needs `media.passthrough.install()` in the process, so receivers hand on `av.Packet`s (VP8 frames, Opus
packets) rather than pictures and sound. Per participant peer connection and kind ("audio", "video"):

    to_a = ForwardedTrack("video")                       # what the server sends A; waits for a source
    transceiver_a = add_passthrough_transceiver(pc_a, to_a)  # before A's offer is applied (or ours made)
    ...the same for B, then negotiate both...
    from_a = Relay(transceiver_a.receiver)               # A's camera as the server receives it
    from_a.add_sink(recorder_write)                      # offered every frame, e.g. for the recording
    from_a.start()                                       # consumes A's track from now on
    from_a.add_output(to_b)                              # B gets A's frames, from the next keyframe on
    ...
    await from_a.stop()                                  # A left: stops A's receiver; to_b waits for a new source

When B asks for a keyframe (PLI/FIR to the server's sender), the relay feeding `track_b` sends a PLI to A.
A ForwardedTrack can be switched to another relay (A reconnected): it waits for a keyframe and keeps its
timestamps going forward, so B's browser sees one continuous stream.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable

import av
import structlog
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media import passthrough

log = structlog.get_logger("telemed.media")

FrameSink = Callable[[av.Packet], None]

#: The only codecs forwarded: both ends of a forward must agree on one, and the recorder muxes these.
PASSTHROUGH_MIME_TYPES = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}
#: Frames an outgoing track may hold before the sender is deemed stuck and the backlog dropped.
QUEUE_FRAMES = 100
#: A keyframe request sooner than this after the previous one is answered by the keyframe already coming.
KEYFRAME_REQUEST_INTERVAL = 0.5


def add_passthrough_transceiver(pc: RTCPeerConnection, track: ForwardedTrack) -> RTCRtpTransceiver:
    """Give `pc` a sendrecv transceiver sending `track`, negotiating only the passthrough codec.

    Add it before applying the browser's offer (aiortc matches it to the offer's m-line of that kind) or before
    creating our own offer. Keyframe requests from the remote reach `track`'s current source.
    """
    wanted = {mime_type.lower() for mime_type in PASSTHROUGH_MIME_TYPES[track.kind]}
    codecs = [c for c in RTCRtpSender.getCapabilities(track.kind).codecs if c.mimeType.lower() in wanted]
    if {c.mimeType.lower() for c in codecs} != wanted:
        raise RuntimeError(f"aiortc no longer offers all of {sorted(wanted)}")  # else preferences would be ignored
    transceiver = pc.addTransceiver(track, direction="sendrecv")
    transceiver.setCodecPreferences(codecs)
    passthrough.on_keyframe_request(transceiver.sender, track.request_keyframe)
    return transceiver


class ForwardedTrack(MediaStreamTrack):
    """An outgoing track carrying another participant's encoded frames (`av.Packet`s) to one peer."""

    def __init__(self, kind: str, *, queue_frames: int = QUEUE_FRAMES) -> None:
        super().__init__()
        if kind not in PASSTHROUGH_MIME_TYPES:
            raise ValueError(f"cannot forward {kind!r} media")
        self.kind = kind
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue(maxsize=queue_frames)
        self._source: Relay | None = None
        self._awaiting_keyframe = kind == "video"
        self._rebase = False
        self._offset = 0
        self._last: tuple[int, fractions.Fraction, float] | None = None  # pts, time base, loop time

    @property
    def source(self) -> Relay | None:
        """The relay whose frames this track carries now, if any."""
        return self._source

    async def recv(self) -> av.Packet:
        """The next forwarded frame; waits, however long, for a source to produce one."""
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        """End the track (aiortc does so when the sender stops) and leave the source."""
        if self._source is not None:
            self._source.remove_output(self)
        if self.readyState == "live":
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)  # wakes a pending recv()
        super().stop()

    async def request_keyframe(self) -> None:
        """The remote lost a picture: ask the source's sender for a keyframe."""
        if self._source is not None:
            await self._source.request_keyframe()

    def _attach(self, relay: Relay) -> None:
        self._source = relay
        self._awaiting_keyframe = self.kind == "video"
        self._rebase = self._last is not None

    def _detach(self) -> None:
        self._source = None

    def _push(self, packet: av.Packet, relay: Relay) -> None:
        if relay is not self._source or self.readyState != "live" or packet.pts is None:
            return
        if self._awaiting_keyframe:
            if not packet.is_keyframe:
                relay.want_keyframe()
                return
            self._awaiting_keyframe = False
        loop_time = asyncio.get_running_loop().time()
        pts = packet.pts
        if self._rebase and self._last is not None:
            self._offset = _continuing_offset(self._last, pts, packet.time_base, loop_time)
        self._rebase = False
        if self._offset:
            pts += self._offset
            packet = _shifted(packet, pts)
        if self._queue.full():
            # The sender is not keeping up: drop the backlog; video must then restart from a keyframe.
            log.warning("forwarded_track_overflow", kind=self.kind, dropped=self._queue.qsize())
            while not self._queue.empty():
                self._queue.get_nowait()
            if self.kind == "video" and not packet.is_keyframe:
                self._awaiting_keyframe = True
                relay.want_keyframe()
                return
        self._queue.put_nowait(packet)
        self._last = (pts, packet.time_base, loop_time)


def _continuing_offset(
    last: tuple[int, fractions.Fraction, float], pts: int, time_base: fractions.Fraction, loop_time: float
) -> int:
    """The pts offset that puts a new source's first frame after our last one, as far on as time has gone."""
    last_pts, last_time_base, last_time = last
    elapsed = fractions.Fraction(max(loop_time - last_time, 0.001))
    return round((last_pts * last_time_base + elapsed) / time_base) - pts


def _shifted(packet: av.Packet, pts: int) -> av.Packet:
    copy = av.Packet(bytes(packet))
    copy.pts = pts
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


class Relay:
    """Reads one received track's encoded frames and offers each to the frame sinks and the outputs.

    From `start()` on the relay consumes the receiver's track (aiortc queues received frames without bound);
    `stop()` stops the receiver. Packets are shared: sinks and outputs must not modify them. A packet's pts
    counts from this stream's first frame in the codec's clock (`time_base` 1/90000 for VP8, 1/48000 for Opus),
    and `is_keyframe` is set (always, for audio).
    """

    def __init__(
        self, receiver: RTCRtpReceiver, *, keyframe_request_interval: float = KEYFRAME_REQUEST_INTERVAL
    ) -> None:
        if receiver.track is None:
            raise ValueError("the receiver has no track yet: apply the remote description first")
        self.receiver = receiver
        self.kind = receiver.track.kind
        self._track = receiver.track
        self._outputs: list[ForwardedTrack] = []
        self._sinks: list[FrameSink] = []
        self._task: asyncio.Task[None] | None = None
        self._keyframe_wanted = False
        self._keyframe_interval = keyframe_request_interval
        self._last_keyframe_request: float | None = None

    @property
    def outputs(self) -> tuple[ForwardedTrack, ...]:
        """The tracks this relay feeds."""
        return tuple(self._outputs)

    def add_sink(self, sink: FrameSink) -> None:
        """Offer every frame from now on to `sink` (called in the event loop: it must be quick)."""
        self._sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        """Stop offering frames to `sink`."""
        if sink in self._sinks:
            self._sinks.remove(sink)

    def add_output(self, track: ForwardedTrack) -> None:
        """Feed `track` (leaving its previous source) from the next keyframe on, and ask for that keyframe."""
        if track.kind != self.kind:
            raise ValueError(f"cannot forward {self.kind} into a {track.kind} track")
        if track.source is self or track.readyState != "live":
            return  # an ended track (a slot its browser did not offer) is read by nobody: no frames, no keyframes
        if track.source is not None:
            track.source.remove_output(track)
        self._outputs.append(track)
        track._attach(self)
        self.want_keyframe()

    def remove_output(self, track: ForwardedTrack) -> None:
        """Stop feeding `track`; it waits for another source."""
        if track in self._outputs:
            self._outputs.remove(track)
            track._detach()

    def want_keyframe(self) -> None:
        """Ask for a keyframe with the next frame that arrives (for callers that cannot await)."""
        if self.kind == "video":
            self._keyframe_wanted = True

    async def request_keyframe(self) -> bool:
        """Send the source a PLI now, unless one went out within the request interval; True if sent."""
        if self.kind != "video":
            return False
        self._keyframe_wanted = False
        now = asyncio.get_running_loop().time()
        if self._last_keyframe_request is not None and now - self._last_keyframe_request < self._keyframe_interval:
            return False
        sent = await passthrough.request_keyframe(self.receiver)
        if sent:
            self._last_keyframe_request = now
        return sent

    def start(self) -> None:
        """Start consuming the received track."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay-{self.kind}")

    async def stop(self) -> None:
        """Stop the receiver and the relay; outputs stay live, waiting for another source."""
        await self.receiver.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for track in list(self._outputs):
            self.remove_output(track)

    async def _run(self) -> None:
        try:
            while True:
                packet = await self._track.recv()
                if not isinstance(packet, av.Packet):
                    log.error("relay_got_decoded_frames", kind=self.kind, hint="call media.passthrough.install()")
                    await self.receiver.stop()  # or decoded frames pile up in the track's queue
                    return
                self._forward(packet)
                if self._keyframe_wanted:
                    await self.request_keyframe()
        except MediaStreamError:
            pass
        except Exception:
            log.exception("relay_failed", kind=self.kind)
        finally:
            for track in list(self._outputs):
                self.remove_output(track)

    def _forward(self, packet: av.Packet) -> None:
        for sink in list(self._sinks):
            try:
                sink(packet)
            except Exception:
                log.exception("frame_sink_failed", kind=self.kind)
        for track in list(self._outputs):
            track._push(packet, self)
