"""A call of three (physician, patient, invited guest) through LocalMediaCall: each browser offers two receive
slots, each slot carries the participant its role assigns, byte for byte, with no renegotiation; a two-party
browser (one slot) keeps working beside them, and when the guest leaves the others' second slot simply waits."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from media import passthrough
from media.calls import LocalMediaCall, LocalMediaEngine, NegotiationFailed
from media.forwarding import PASSTHROUGH_MIME_TYPES
from media.peer import slot_index
from tests.integration.test_media_passthrough import (
    Client,
    OpusSource,
    Received,
    Vp8Source,
    _assert_forwarded_unchanged,
    _collect,
    _until,
    loopback_only,  # noqa: F401  # the fixture
)

ROLES = ("physician", "patient", "guest")
SHADES = {"physician": 60, "patient": 140, "guest": 220}
PITCHES = {"physician": 330.0, "patient": 440.0, "guest": 550.0}


def test_slots_follow_the_roles() -> None:
    assert [slot_index("physician", other) for other in ("patient", "guest")] == [0, 1]
    assert [slot_index("patient", other) for other in ("physician", "guest")] == [0, 1]
    assert [slot_index("guest", other) for other in ("physician", "patient")] == [0, 1]
    assert slot_index("", "") == 0  # roles unknown: two parties, one slot


def _browser(shade: int, pitch: float, *, slots: int = 2) -> Client:
    """A participant's browser as the call page sets it up: one bundle, the sending audio and video pair first,
    then a recvonly pair per further slot. Received frames of slot n go to `received` (n = 0) or `extra`."""
    client = Client(RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)),
                    Vp8Source(shade), OpusSource(pitch))
    client.extra = {"video": [], "audio": []}  # type: ignore[attr-defined]
    for slot in range(slots):
        for kind, source in (("audio", client.audio), ("video", client.video)):
            transceiver = client.pc.addTransceiver(source if slot == 0 else kind,
                                                   direction="sendrecv" if slot == 0 else "recvonly")
            codecs = RTCRtpSender.getCapabilities(kind).codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType in PASSTHROUGH_MIME_TYPES[kind]])
            client.transceivers[kind if slot == 0 else f"{kind}-{slot + 1}"] = transceiver
    passthrough.on_keyframe_request(client.transceivers["video"].sender, client.video.request_keyframe)
    return client


async def _join(call: LocalMediaCall, client: Client, peer_id: str, role: str) -> None:
    await call.add_peer(peer_id, role)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    answer = await call.answer(peer_id, client.pc.localDescription.sdp)
    await client.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for name, transceiver in client.transceivers.items():
        kind, _, slot = name.partition("-")
        into = client.received[kind] if not slot else client.extra[kind]  # type: ignore[attr-defined]
        client.tasks.append(asyncio.create_task(_collect(transceiver.receiver.track, into)))


@pytest.mark.usefixtures("loopback_only")
async def test_three_participants_each_get_the_other_two_in_their_slots() -> None:
    engine = LocalMediaEngine(ice_servers=lambda peer_id: [])
    engine.start()
    call = engine.open_call(uuid.uuid4(), lambda peer_id, state: None)
    clients = {role: _browser(SHADES[role], PITCHES[role]) for role in ROLES}
    try:
        for role in ROLES:
            await _join(call, clients[role], role, role)

        def slot(receiver: str, source: str) -> dict[str, list[Received]]:
            client = clients[receiver]
            return client.received if slot_index(receiver, source) == 0 else client.extra  # type: ignore[attr-defined]

        pairs = [(receiver, source) for receiver in ROLES for source in ROLES if receiver != source]
        await _until(lambda: all(len(slot(r, s)["video"]) >= 15 and len(slot(r, s)["audio"]) >= 30
                                 for r, s in pairs), "every participant's video and sound in the right slots")
        for receiver, source in pairs:
            _assert_forwarded_unchanged(slot(receiver, source)["video"], clients[source].video.sent, minimum=15)
            _assert_forwarded_unchanged(slot(receiver, source)["audio"], clients[source].audio.sent, minimum=30)

        # The guest leaves: physician and patient keep each other; their second slot waits, nothing renegotiated.
        await call.remove_peer("guest")
        seen = len(clients["patient"].received["video"])
        await _until(lambda: len(clients["patient"].received["video"]) >= seen + 10, "the physician, still")
        assert call.peer("patient").slots[1]["video"].source is None
    finally:
        await engine.close()
        for client in clients.values():
            await client.pc.close()
            await asyncio.gather(*client.tasks)


@pytest.mark.usefixtures("loopback_only")
async def test_offers_the_server_cannot_forward_are_refused() -> None:
    engine = LocalMediaEngine(ice_servers=lambda peer_id: [])
    engine.start()
    call = engine.open_call(uuid.uuid4(), lambda peer_id, state: None)
    try:
        sending_twice = _browser(10, 220.0, slots=1)
        sending_twice.pc.addTransceiver("video", direction="sendrecv")  # a second video it would send
        sending_twice.pc.addTransceiver("audio", direction="recvonly")
        await call.add_peer("x", "patient")
        await sending_twice.pc.setLocalDescription(await sending_twice.pc.createOffer())
        with pytest.raises(NegotiationFailed, match="only the first"):
            await call.answer("x", sending_twice.pc.localDescription.sdp)

        too_many = _browser(10, 220.0, slots=3)
        await call.add_peer("y", "patient")
        await too_many.pc.setLocalDescription(await too_many.pc.createOffer())
        with pytest.raises(NegotiationFailed, match="1 to 2"):
            await call.answer("y", too_many.pc.localDescription.sdp)
        for client in (sending_twice, too_many):
            await client.pc.close()
    finally:
        await engine.close()
