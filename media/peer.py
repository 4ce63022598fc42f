"""The server's WebRTC peer for one participant: answers the browser's offer, sends it the others' media.

The outgoing tracks (one per kind, carrying the other participant's frames) exist from the start, so the
answer already has them and nothing is renegotiated when the other side joins or rejoins later: the
ForwardedTracks simply wait for a source. What the participant sends is read by one Relay per kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.sdp import SessionDescription, candidate_from_sdp

from media.forwarding import ForwardedTrack, Relay, add_passthrough_transceiver

log = structlog.get_logger("telemed.media")

KINDS = ("audio", "video")
StateListener = Callable[[str], None]


class OfferRejected(ValueError):
    """The offer cannot be used (not SDP, or media this server does not forward); the message says why."""


def check_offer(sdp: str) -> None:
    """Exactly one audio and one video section, nothing else (no data channel): every received track must be read,
    and these are the ones the peer reads and answers. A browser without a camera offers video `recvonly`."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception:  # the parser raises whatever its input provokes
        raise OfferRejected("the offer is not a session description") from None
    if sorted(media.kind for media in description.media) != sorted(KINDS):
        raise OfferRejected("offer one audio and one video section (recvonly without a device), nothing else")


class ServerPeer:
    """One RTCPeerConnection to one participant's browser, with its outgoing tracks and incoming relays."""

    def __init__(self, peer_id: str, *, ice_servers: list[RTCIceServer], on_state: StateListener) -> None:
        self.peer_id = peer_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))  # never aiortc's public default
        self.outputs = {kind: ForwardedTrack(kind) for kind in KINDS}
        self.transceivers: dict[str, RTCRtpTransceiver] = {
            kind: add_passthrough_transceiver(self.pc, track) for kind, track in self.outputs.items()}
        self.relays: dict[str, Relay] = {}
        self._closed = False

        @self.pc.on("connectionstatechange")
        def _state_changed() -> None:
            on_state(self.pc.connectionState)

    async def answer(self, offer_sdp: str) -> tuple[str, list[Relay]]:
        """Apply the browser's offer; our answer with all our candidates (aiortc gathers before answering), and
        the relays that began reading what the participant now sends."""
        check_offer(offer_sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        started = []
        for kind, transceiver in self.transceivers.items():
            if transceiver.currentDirection not in ("sendrecv", "sendonly"):
                # The browser receives nothing of this kind: no sender will read the track, which must then
                # neither fill up nor keep asking the other participant for keyframes.
                self.outputs[kind].stop()
            if kind not in self.relays and transceiver.receiver.track is not None:
                relay = Relay(transceiver.receiver)
                relay.start()
                self.relays[kind] = relay
                started.append(relay)
        return self.pc.localDescription.sdp, started

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """A candidate the browser trickled (`candidate:...` as in SDP), or "" when it has sent them all."""
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (AssertionError, ValueError, IndexError):  # aiortc's parser asserts on short input
            raise OfferRejected("the candidate is not an ICE candidate line") from None
        parsed.sdpMid, parsed.sdpMLineIndex = sdp_mid, sdp_mline_index
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            parsed.sdpMLineIndex = 0  # one bundled transport: any section will do
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        """Stop reading, stop sending, close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        relays, self.relays = list(self.relays.values()), {}
        await asyncio.gather(*(relay.stop() for relay in relays), return_exceptions=True)
        for track in self.outputs.values():
            track.stop()
        await self.pc.close()
