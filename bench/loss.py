"""Loss through the forwarder: 2% of one participant's RTP packets are dropped on its way out (at random), and
the other participant counts the audio and video frames that arrive, with aiortc's stock audio jitter buffer on
the server and with ours (media.passthrough.AudioPassthroughBuffer).

Clients and server are aiortc in this process, all ICE on 127.0.0.1; the clients are the tests' synthetic VP8
and Opus sources (tests/integration/test_media_passthrough.py).
"""

from __future__ import annotations

import asyncio
import random
import uuid

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp

from media import loopback

LOSS = 0.02
SECONDS = 20.0


async def _measure(*, stock_audio_buffer: bool) -> tuple[float, float, float]:
    """(share of packets dropped, of audio frames missing, of video frames missing) at the other side."""
    from media import passthrough
    from media.calls import LocalMediaEngine
    from tests.integration.test_media_passthrough import _client, join_call

    engine = LocalMediaEngine(ice_servers=lambda peer_id: [])
    engine.start()
    if stock_audio_buffer:
        rtcrtpreceiver.JitterBuffer = JitterBuffer  # type: ignore[misc]  # aiortc's own, for the comparison
    lossy: set[RTCDtlsTransport] = set()
    counts = {"seen": 0, "dropped": 0}
    send = RTCDtlsTransport._send_rtp

    async def send_rtp(transport: RTCDtlsTransport, data: bytes) -> None:
        if transport in lossy and not is_rtcp(data):
            counts["seen"] += 1
            if random.random() < LOSS:  # simulated network loss, not security
                counts["dropped"] += 1
                return
        await send(transport, data)

    RTCDtlsTransport._send_rtp = send_rtp  # type: ignore[method-assign]
    call = engine.open_call(uuid.uuid4(), lambda peer_id, state: None)
    a, b = _client(shade=90, pitch=330.0), _client(shade=170, pitch=440.0)
    try:
        for peer_id, role, client in (("a", "physician", a), ("b", "patient", b)):
            await join_call(call, client, peer_id, role)
        await asyncio.sleep(3)
        lossy.update(transceiver.sender.transport for transceiver in a.pc.getTransceivers())
        sent = {kind: len(getattr(a, kind).sent) for kind in ("audio", "video")}
        received = {kind: len(b.received[kind]) for kind in ("audio", "video")}
        await asyncio.sleep(SECONDS)
        lossy.clear()
        await asyncio.sleep(1)
        missing = {kind: 1 - (len(b.received[kind]) - received[kind]) / (len(getattr(a, kind).sent) - sent[kind])
                   for kind in ("audio", "video")}
    finally:
        RTCDtlsTransport._send_rtp = send  # type: ignore[method-assign]
        await engine.close()
        for client in (a, b):
            await client.pc.close()
            await asyncio.gather(*client.tasks)
        passthrough.uninstall()
    return counts["dropped"] / max(1, counts["seen"]), missing["audio"], missing["video"]


def bench_loss() -> None:
    loopback.pin()
    for label, stock in (("aiortc's audio jitter buffer", True), ("passthrough audio buffer", False)):
        dropped, audio, video = asyncio.run(_measure(stock_audio_buffer=stock))
        print(f"{'loss ' + f'{LOSS:.0%}' + ', ' + label:<48} packets dropped {dropped:5.1%}, audio frames missing "
              f"{audio:5.1%}, video frames missing {video:4.1%}")


if __name__ == "__main__":
    bench_loss()
