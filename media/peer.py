"""The server's WebRTC peer for one participant: answers the browser's offer, sends it the others' media.

A call holds three participants at most (physician, patient, an invited guest), so a participant sees and
hears two others at most. The browser offers one audio and one video section per other participant it wants
to receive ("slots"; the first pair also carries what it sends), and the server's outgoing tracks for every
slot exist from the start: the answer already has them, and nothing is renegotiated when someone joins,
leaves or rejoins later; the ForwardedTracks simply wait for a source. Which slot carries whom follows from
the roles alone (`slot_index`): the physician's first slot is the patient, the patient's first slot is the
physician, the guest sees the physician then the patient. A two-party browser offers one pair and is never
sent a guest. What the participant sends is read by one Relay per kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription, candidate_from_sdp

from media.forwarding import ForwardedTrack, Relay, add_passthrough_transceiver

log = structlog.get_logger("telemed.media")

KINDS = ("audio", "video")
#: The call's roles in the order that fills a participant's slots.
ROLES = ("physician", "patient", "guest")
#: Other participants one browser receives at most (a call holds three).
SLOTS = len(ROLES) - 1
StateListener = Callable[[str], None]


def slot_index(receiver_role: str, source_role: str) -> int:
    """Which of `receiver_role`'s slots carries `source_role` (0 when a role is not one of ROLES: two parties)."""
    others = [role for role in ROLES if role != receiver_role]
    return others.index(source_role) if source_role in others else 0


class OfferRejected(ValueError):
    """The offer cannot be used (not SDP, or media this server does not forward); the message says why."""


def check_offer(sdp: str) -> list[str]:
    """The kinds of the offer's sections, in order: as many audio as video sections (one to SLOTS each), nothing
    else (no data channel); only the first of each kind may send, as every received track must be read and these
    are the ones the peer reads. A browser without a camera offers its first video section `recvonly`."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception:  # the parser raises whatever its input provokes
        raise OfferRejected("the offer is not a session description") from None
    sections = {kind: [media for media in description.media if media.kind == kind] for kind in KINDS}
    if len(description.media) != sum(len(found) for found in sections.values()) or \
            not 1 <= len(sections["audio"]) == len(sections["video"]) <= SLOTS:
        raise OfferRejected(f"offer one audio and one video section per other participant (1 to {SLOTS} each; "
                            "recvonly without a device), nothing else")
    if any(media.direction not in ("recvonly", "inactive") for found in sections.values() for media in found[1:]):
        raise OfferRejected("only the first audio and the first video section may send")
    return [media.kind for media in description.media]


class ServerPeer:
    """One RTCPeerConnection to one participant's browser, with its outgoing tracks and incoming relays."""

    def __init__(self, peer_id: str, *, ice_servers: list[RTCIceServer], on_state: StateListener,
                 role: str = "") -> None:
        self.peer_id = peer_id
        self.role = role
        # Never aiortc's public default ICE server. One transport for everything, and the transceivers created in
        # the offer's order (`answer`): otherwise aiortc bundles a second transceiver of a kind onto a transport it
        # then discards, and that slot never gets media.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        # The tracks exist from the start (the others' relays feed them as soon as they send); their transceivers
        # come with the offer, one pair per slot it offers (aiortc chokes on a transceiver the offer leaves out).
        self.slots = [{kind: ForwardedTrack(kind) for kind in KINDS} for _ in range(SLOTS)]
        self.slot_transceivers: list[dict[str, RTCRtpTransceiver]] = []
        self.relays: dict[str, Relay] = {}
        self._closed = False

        @self.pc.on("connectionstatechange")
        def _state_changed() -> None:
            on_state(self.pc.connectionState)

    async def answer(self, offer_sdp: str) -> tuple[str, list[Relay]]:
        """Apply the browser's offer; our answer with all our candidates (aiortc gathers before answering), and
        the relays that began reading what the participant now sends."""
        kinds = check_offer(offer_sdp)
        offered = kinds.count("audio")
        if not self.slot_transceivers:  # the first offer; later ones (if any) must fit the same slots
            # In the offer's order (the first is the bundle's transport); aiortc gives each section the first
            # free transceiver of its kind, so the n-th section of a kind is slot n.
            self.slot_transceivers = [{} for _ in range(offered)]
            for position, kind in enumerate(kinds):
                nth = kinds[:position].count(kind)
                self.slot_transceivers[nth][kind] = add_passthrough_transceiver(self.pc, self.slots[nth][kind])
        elif offered != len(self.slot_transceivers):
            raise OfferRejected("a new offer must keep the sections of the first")
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        for index, slot in enumerate(self.slots):
            for kind, track in slot.items():
                transceiver = self.slot_transceivers[index][kind] if index < offered else None
                if transceiver is None or transceiver.currentDirection not in ("sendrecv", "sendonly"):
                    # The browser receives nothing here (not offered, or recvonly): no sender will read the
                    # track, which must then neither fill up nor keep asking its source for keyframes.
                    track.stop()
        started = []
        for kind, transceiver in self.slot_transceivers[0].items():
            if kind not in self.relays and transceiver.receiver.track is not None:
                relay = Relay(transceiver.receiver)
                relay.start()
                self.relays[kind] = relay
                started.append(relay)
        return self.pc.localDescription.sdp, started

    def output_for(self, source_role: str, kind: str) -> ForwardedTrack:
        """The outgoing track that carries what a participant in `source_role` sends, of this kind."""
        return self.slots[slot_index(self.role, source_role)][kind]

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
        for slot in self.slots:
            for track in slot.values():
                track.stop()
        await self.pc.close()
