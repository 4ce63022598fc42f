"""The forwarder does not amplify loss: packets lost on a participant's link cost the other side those packets'
audio frames and no more (aiortc's own audio jitter buffer would throw away the good packets around each hole),
and lost video is recovered by retransmission. Every 20th RTP packet A sends is dropped on its way out.

Clients and server are aiortc on 127.0.0.1 (`loopback_only`), through LocalMediaCall as in a real call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp

from media.calls import LocalMediaEngine
from tests.integration.test_media_passthrough import (
    _client,
    _until,
    join_call,
    loopback_only,  # noqa: F401  # the fixture
)

DROP_EVERY = 20  # 5% of A's RTP packets
WINDOW_SECONDS = 5.0


class LossyLink:
    """Drops every `every`-th RTP packet sent over the transports it is given (RTCP passes)."""

    def __init__(self, every: int = DROP_EVERY) -> None:
        self.every = every
        self.transports: set[RTCDtlsTransport] = set()
        self.seen = self.dropped = 0
        self._send = RTCDtlsTransport._send_rtp

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        link = self

        async def send_rtp(transport: RTCDtlsTransport, data: bytes) -> None:
            if transport in link.transports and not is_rtcp(data):
                link.seen += 1
                if link.seen % link.every == 0:
                    link.dropped += 1
                    return
            await link._send(transport, data)

        monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", send_rtp)


@pytest.fixture
def lossy_link(monkeypatch: pytest.MonkeyPatch) -> Iterator[LossyLink]:
    link = LossyLink()
    link.install(monkeypatch)
    yield link
    link.transports.clear()


@pytest.mark.usefixtures("loopback_only")
async def test_loss_on_a_link_costs_the_other_side_only_the_lost_packets(lossy_link: LossyLink) -> None:
    engine = LocalMediaEngine(ice_servers=lambda peer_id: [])
    engine.start()
    call = engine.open_call(uuid.uuid4(), lambda peer_id, state: None)
    a, b = _client(shade=90, pitch=330.0), _client(shade=170, pitch=440.0)
    try:
        for peer_id, role, client in (("a", "physician", a), ("b", "patient", b)):
            await join_call(call, client, peer_id, role)
        await _until(lambda: len(b.received["audio"]) >= 50 and len(b.received["video"]) >= 15, "A's media at B")

        lossy_link.transports.update(t.sender.transport for t in a.pc.getTransceivers())
        sent = {kind: len(getattr(a, kind).sent) for kind in ("audio", "video")}
        received = {kind: len(b.received[kind]) for kind in ("audio", "video")}
        await asyncio.sleep(WINDOW_SECONDS)
        lossy_link.transports.clear()
        await asyncio.sleep(0.5)  # what was in flight arrives (or is retransmitted)
        sent = {kind: len(getattr(a, kind).sent) - count for kind, count in sent.items()}
        received = {kind: len(b.received[kind]) - count for kind, count in received.items()}
    finally:
        await engine.close()
        for client in (a, b):
            await client.pc.close()
            await asyncio.gather(*client.tasks)

    assert lossy_link.dropped >= WINDOW_SECONDS * 50 / DROP_EVERY  # the link really lost packets
    missing_audio = 1 - received["audio"] / sent["audio"]
    # Each audio packet is one frame: the share missing is the share dropped (5%), give or take the frames in
    # flight at the window's edges; aiortc's stock audio buffer loses 5-6 times as many.
    assert missing_audio <= 1 / DROP_EVERY + 0.03, f"{missing_audio:.1%} of audio frames missing"
    assert received["video"] >= sent["video"] - 2, "lost video packets are retransmitted (NACK)"
