"""TURN for real: coturn on 127.0.0.1 (tests/turn_server.py) relays a relay-only patient's call through the app.

The patient's aiortc client is configured with exactly the `ice_servers` the join API returned and
`iceTransportPolicy: relay`, so its only candidates are allocations on coturn, made with the short-lived TURN-REST
credentials the app minted: if it connects, its media went through coturn. The physician is a plain loopback client
and the server's peers get TURN credentials of their own (as in production). Credentials that expired, or were
signed with another secret, get no allocation, so such a client has no candidate at all and cannot connect.

aiortc uses only the first `turn:` URL of its configuration, so UDP and TCP to coturn are tested separately.
Media stays on loopback as in test_signaling_call: host candidates are 127.0.0.1 only, coturn listens and relays
on 127.0.0.1 only, and every SDP is checked to carry only 127.0.0.1 candidates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from signaling import turn
from tests.factories import Account
from tests.integration.test_media_passthrough import Client, _client, _until
from tests.integration.test_signaling_call import (
    Socket,
    candidate_addresses,
    connect_media,
    join,
    keep_ice_on_loopback,
    live_clinic,
    open_socket,
    stop_media,
)
from tests.turn_server import TurnServer, turn_server

pytestmark = pytest.mark.slow

TIMEOUT = 10.0


@pytest.fixture
def coturn() -> Iterator[TurnServer]:
    with turn_server() as server:
        yield server


def candidates(sdp: str) -> list[list[str]]:
    """The fields of each `a=candidate:` line: [foundation, component, transport, priority, address, port, "typ",
    type, ...]."""
    return [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]


def relay_only(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """A browser's `{iceServers, iceTransportPolicy: "relay"}`, from the join response's entries as they are."""
    return RTCConfiguration(iceServers=[RTCIceServer(**server) for server in ice_servers],
                            iceTransportPolicy=RTCIceTransportPolicy.RELAY)


def relay_only_client(ice_servers: list[dict[str, Any]], *, shade: int, pitch: float) -> Client:
    """test_media_passthrough's client (synthetic VP8 and Opus, passthrough decoder), allowed only relay candidates."""
    return _client(shade, pitch, relay_only(ice_servers))


async def join_for_ice(client: TestClient, account: Account, consultation: str) -> tuple[Socket, list[dict[str, Any]]]:
    """Ticket and `ice_servers` from the join API, then the socket's `join`: what the call page does."""
    response = await client.post(f"/api/v1/consultations/{consultation}/join", headers=account.auth)
    assert response.status == 201, await response.text()
    body = await response.json()
    socket = await open_socket(client)
    await socket.send({"type": "join", "consultation_id": consultation, "ticket": body["ticket"]})
    await socket.expect("joined")
    return socket, body["ice_servers"]


async def gathered(configuration: RTCConfiguration) -> list[list[str]]:
    """The candidates of an offer made with `configuration` (aiortc gathers them all before it returns)."""
    pc = RTCPeerConnection(configuration)
    try:
        pc.addTransceiver("audio")
        async with asyncio.timeout(TIMEOUT):
            await pc.setLocalDescription(await pc.createOffer())
        return candidates(pc.localDescription.sdp)
    finally:
        await pc.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_turn_relay_only_patient_calls_through_coturn_with_the_issued_credentials(
        coturn: TurnServer, aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
        transport: str) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, turn_urls=[coturn.url(transport)],
                               turn_secret=coturn.secret)
    client, consultation = clinic["client"], clinic["consultation"]
    doctor = await join(client, clinic["doctor"], consultation)
    patient, ice_servers = await join_for_ice(client, clinic["patient"], consultation)
    assert [server["urls"] for server in ice_servers] == [[coturn.url(transport)]]
    username = ice_servers[0]["username"]
    assert int(username.split(":")[0]) > time.time(), "the issued credentials are still valid"

    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = relay_only_client(ice_servers, shade=170, pitch=440.0)
    try:
        await b.pc.setLocalDescription(await b.pc.createOffer())
        offered = candidates(b.pc.localDescription.sdp)
        assert offered, f"no relay candidate: coturn refused the issued credentials?\n{coturn.log()[-4000:]}"
        assert {fields[7] for fields in offered} == {"relay"}, "a relay-only client offers relay candidates only"
        assert {fields[4] for fields in offered} == {"127.0.0.1"}, "coturn relays on 127.0.0.1 only"
        assert all(int(fields[5]) in coturn.relay_ports for fields in offered), "allocations from coturn's range"
        await patient.send({"type": "offer", "sdp": b.pc.localDescription.sdp})
        answer = await patient.expect("answer")
        assert candidate_addresses(answer["sdp"]) == {"127.0.0.1"}
        await b.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        b.start_receiving()

        await _until(lambda: b.pc.connectionState == "connected", "the relay-only patient to connect")
        await _until(lambda: len(b.received["video"]) >= 10 and len(b.received["audio"]) >= 20
                     and len(a.received["video"]) >= 10, "media both ways, the patient's through coturn")
        doctor_sent = {frame.data for frame in a.video.sent}
        assert all(frame.data in doctor_sent for frame in b.received["video"]), "the physician's frames, unchanged"
        patient_sent = {frame.data for frame in b.video.sent}
        assert all(frame.data in patient_sent for frame in a.received["video"]), "the patient's frames, unchanged"
        assert f"username=<{username}>" in coturn.log(), "coturn logged the allocation made with the issued credentials"
    finally:
        await stop_media(a)
        await stop_media(b)
        await doctor.close()
        await patient.close()
        # The app (its peers hold allocations too) closes while coturn runs: aioice deletes an allocation on close
        # and, with no TURN server answering over UDP, retransmits for 63.5 s before it gives up.
        await client.close()  # (`coturn` comes first among the fixtures, so it outlives the app's anyway)


async def test_turn_coturn_refuses_expired_credentials_and_another_secret(coturn: TurnServer) -> None:
    url, secret, now = coturn.url("udp"), coturn.secret.encode(), int(time.time())

    def relay_only_with(secret: bytes, participant: str, *, now: int) -> RTCConfiguration:
        minted = turn.ice_servers(stun_urls=[], turn_urls=[url], secret=secret, participant=participant, now=now,
                                  lifetime=3600)
        return relay_only([server.as_json() for server in minted])

    started = time.monotonic()
    fresh = await gathered(relay_only_with(secret, "fresh", now=now))
    assert [fields[7] for fields in fresh] == ["relay"], "valid credentials get an allocation (the control)"
    expired = await gathered(relay_only_with(secret, "expired", now=now - 3601))  # expired a second ago
    assert expired == [], "coturn allocated a relay for expired credentials"
    assert coturn.refused(f"{now - 1}:expired"), f"coturn answered no 401 to the expired credentials\n{coturn.log()}"
    forged = await gathered(relay_only_with(b"another secret", "forged", now=now))
    assert forged == [], "coturn allocated a relay for credentials signed with another secret"
    assert coturn.refused(f"{now + 3600}:forged"), f"coturn answered no 401 to the forged credentials\n{coturn.log()}"
    # No candidate, so no call: and it is known at once (coturn's 401 comes back in milliseconds; aioice
    # would wait 5 s for a TURN server that does not answer).
    assert time.monotonic() - started < 3.0
