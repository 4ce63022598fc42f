"""A consultation's media, behind the small interface the signaling drives.

`MediaEngine.open_call()` gives a `MediaCall`: peers are added, answered, fed candidates and removed by id.
Everything crossing the interface is plain data (ids, SDP strings, candidate lines, state names), so the
same calls can later travel over the local channel to a media worker process (TELEMED_MEDIA_WORKERS > 0).
`LocalMediaEngine` runs the peers in this process (TELEMED_MEDIA_WORKERS=0 semantics).

Each peer is added with its participant's role; what a peer sends goes to each other peer's slot for that role
(media.peer.slot_index), so a call of three (physician, patient, invited guest) needs no renegotiation.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Protocol

import av
import structlog
from aiortc import RTCIceServer
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from media import passthrough
from media.forwarding import Relay
from media.peer import OfferRejected, ServerPeer
from media.recording.capture import CallRecorder, RecordingSpec
from media.recording.storage import StorageLocation

log = structlog.get_logger("telemed.media")

PeerStateListener = Callable[[str, str], None]  # (peer id, RTCPeerConnection.connectionState)
CallFrameSink = Callable[[str, str, av.Packet], None]  # (peer id, kind, encoded frame): the recorder's hook
IceServersFor = Callable[[str], list[RTCIceServer]]  # the server's own ICE servers, per peer id


class UnknownPeer(KeyError):
    """No such peer in this call (it left, or was replaced by a newer connection)."""


class NegotiationFailed(ValueError):
    """The browser's offer or candidate cannot be used; the message says why (safe to show)."""


class MediaCall(Protocol):
    """One consultation's peers, wherever they run."""

    async def add_peer(self, peer_id: str, role: str = "") -> None: ...

    async def answer(self, peer_id: str, offer_sdp: str) -> str: ...

    async def add_candidate(self, peer_id: str, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None: ...

    async def remove_peer(self, peer_id: str) -> None: ...

    async def start_recording(self, spec: RecordingSpec, location: StorageLocation) -> None: ...

    async def stop_recording(self, reason: str) -> None: ...

    async def close(self) -> None: ...


class MediaEngine(Protocol):
    """Hosts calls: in this process, or (later) in media worker processes."""

    def open_call(self, call_id: uuid.UUID, on_peer_state: PeerStateListener) -> MediaCall: ...

    async def close(self) -> None: ...


class LocalMediaCall:
    """The peers of one call in this process, each forwarding its media to the other."""

    def __init__(self, call_id: uuid.UUID, *, ice_servers: IceServersFor, on_peer_state: PeerStateListener,
                 on_closed: Callable[[LocalMediaCall], None]) -> None:
        self.call_id = call_id
        self._ice_servers = ice_servers
        self._on_peer_state = on_peer_state
        self._on_closed = on_closed
        self._peers: dict[str, ServerPeer] = {}
        self._sinks: list[CallFrameSink] = []
        self._recorder: CallRecorder | None = None
        self._closed = False

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def peer(self, peer_id: str) -> ServerPeer:
        try:
            return self._peers[peer_id]
        except KeyError:
            raise UnknownPeer(peer_id) from None

    def add_sink(self, sink: CallFrameSink) -> None:
        """Offer every frame any peer sends, from now on, to `sink` (in the event loop: it must be quick)."""
        self._sinks.append(sink)
        for peer in self._peers.values():
            for relay in peer.relays.values():
                self._attach_sink(peer.peer_id, relay, sink)

    async def add_peer(self, peer_id: str, role: str = "") -> None:
        """A participant's peer, its outgoing tracks fed at once by the other peers' relays (those that send)."""
        if self._closed:
            raise UnknownPeer(peer_id)
        if peer_id in self._peers:
            raise ValueError(f"peer {peer_id} exists")
        peer = ServerPeer(peer_id, ice_servers=self._ice_servers(peer_id),
                          on_state=lambda state: self._on_peer_state(peer_id, state), role=role)
        self._peers[peer_id] = peer
        for other in self._others(peer_id):
            for kind, relay in other.relays.items():
                relay.add_output(peer.output_for(other.role, kind))

    async def answer(self, peer_id: str, offer_sdp: str) -> str:
        """The server's answer to this peer's offer; from then on what it sends goes to the other peer."""
        peer = self.peer(peer_id)
        try:
            sdp, relays = await peer.answer(offer_sdp)
        except OfferRejected as exc:
            raise NegotiationFailed(str(exc)) from None
        except (ValueError, InternalError, InvalidAccessError, InvalidStateError, OperationError) as exc:
            log.info("offer_not_usable", error=type(exc).__name__)
            raise NegotiationFailed("the offer cannot be answered (codecs or transport)") from None
        if self._peers.get(peer_id) is not peer:  # removed while answering
            raise UnknownPeer(peer_id)
        for relay in relays:
            if self._recorder is not None:
                self._recorder.attach(peer_id, peer.role, relay.receiver, relay.kind)
            for sink in self._sinks:
                self._attach_sink(peer_id, relay, sink)
            for other in self._others(peer_id):
                relay.add_output(other.output_for(peer.role, relay.kind))
        return sdp

    async def add_candidate(self, peer_id: str, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        try:
            await self.peer(peer_id).add_candidate(candidate, sdp_mid, sdp_mline_index)
        except OfferRejected as exc:
            raise NegotiationFailed(str(exc)) from None
        except (ValueError, InvalidStateError) as exc:
            log.info("candidate_not_usable", error=type(exc).__name__)
            raise NegotiationFailed("the candidate cannot be used") from None

    async def remove_peer(self, peer_id: str) -> None:
        """Close the peer; the other peer's tracks wait for a new source (the participant may come back)."""
        peer = self._peers.pop(peer_id, None)
        if self._recorder is not None:
            self._recorder.detach(peer_id)
        if peer is not None:
            await peer.close()

    async def start_recording(self, spec: RecordingSpec, location: StorageLocation) -> None:
        """Capture what every peer sends, from now on, into the recording's segments (media.recording.capture)."""
        if self._closed:
            raise UnknownPeer("the call is closed")
        if self._recorder is not None:
            if self._recorder.spec.recording_id == spec.recording_id:
                return
            await self.stop_recording("replaced")
        # Opening the store (an object store's client) and listing what earlier recorders left: not in the loop.
        recorder = await asyncio.to_thread(lambda: CallRecorder(spec, location.open()))
        if self._closed or self._recorder is not None:  # closed, or started again, meanwhile
            await recorder.stop("superseded")
            return
        self._recorder = recorder
        for peer in self._peers.values():
            for kind, relay in peer.relays.items():
                self._recorder.attach(peer.peer_id, peer.role, relay.receiver, kind)

    async def stop_recording(self, reason: str) -> None:
        """Complete every segment and write the end marker; returns once all of it is on disk."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            await recorder.stop(reason)

    async def close(self) -> None:
        """Stop recording and close every peer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.stop_recording("call_closed")
        except Exception:
            log.exception("recording_stop_failed")
        peers, self._peers = list(self._peers.values()), {}
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        self._on_closed(self)

    def _others(self, peer_id: str) -> list[ServerPeer]:
        return [peer for other_id, peer in self._peers.items() if other_id != peer_id]

    @staticmethod
    def _attach_sink(peer_id: str, relay: Relay, sink: CallFrameSink) -> None:
        kind = relay.kind
        relay.add_sink(lambda packet: sink(peer_id, kind, packet))


class LocalMediaEngine:
    """Calls whose peers live in this process: install the passthrough decoder, track the calls, close them."""

    def __init__(self, *, ice_servers: IceServersFor) -> None:
        self._ice_servers = ice_servers
        self._calls: set[LocalMediaCall] = set()
        self._installed_here = False

    def start(self) -> None:
        """Receivers in this process hand on encoded frames from now on (see media.passthrough)."""
        if not passthrough.is_installed():
            passthrough.install()
            self._installed_here = True

    @property
    def calls(self) -> int:
        return len(self._calls)

    def open_call(self, call_id: uuid.UUID, on_peer_state: PeerStateListener) -> LocalMediaCall:
        call = LocalMediaCall(call_id, ice_servers=self._ice_servers, on_peer_state=on_peer_state,
                              on_closed=self._calls.discard)
        self._calls.add(call)
        return call

    async def close(self) -> None:
        """Close every call and give aiortc its decoders back if this engine took them."""
        await asyncio.gather(*(call.close() for call in list(self._calls)), return_exceptions=True)
        if self._installed_here:
            passthrough.uninstall()
            self._installed_here = False
