"""Who cannot join a call, what a connection may not send, and that none of it sees or disturbs the call."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server import keys
from server.db.engine import transaction
from server.scheduling.models import ConsultationStatus
from signaling import tickets
from signaling.messages import MAX_MESSAGE_BYTES
from signaling.models import CallRole
from tests.factories import register_patient
from tests.integration.test_media_passthrough import _until
from tests.integration.test_signaling_call import (
    Socket,
    another_consultation,
    connect_media,
    get_ticket,
    join,
    joined_pair,
    keep_ice_on_loopback,
    live_clinic,
    open_socket,
    status_of,
    stop_media,
)

pytestmark = pytest.mark.slow


async def _refused(socket: Socket, message: dict[str, Any] | str | None) -> tuple[int | None, list[str]]:
    """Send one message (or nothing) and wait for the server to close: (close code, error codes received)."""
    if isinstance(message, dict):
        await socket.send(message)
    elif isinstance(message, str):
        await socket.ws.send_str(message)
    code = await socket.closed()
    return code, [event["code"] for event in socket.of("error")]


async def test_signaling_refusals_neither_see_nor_disturb_the_call(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, signaling_join_timeout_seconds=1)
    client, consultation, doctor_account = clinic["client"], clinic["consultation"], clinic["doctor"]

    # A second patient of the same physician, checked in but not admitted.
    other_patient, other = await another_consultation(clinic, "Анна Вторая", admitted=False)

    # The call: the physician's ticket is kept, to try it again later.
    used_ticket = await get_ticket(client, doctor_account, consultation)
    doctor = await open_socket(client)
    await doctor.send({"type": "join", "consultation_id": consultation, "ticket": used_ticket})
    await doctor.expect("joined")
    patient = await join(client, clinic["patient"], consultation)
    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0)
    try:
        await _until(lambda: len(a.received["video"]) >= 10 and len(b.received["video"]) >= 10, "video both ways")
        seen = (len(doctor.events), len(patient.events))

        # Not the clinic's page: refused before any upgrade.
        for origin in ("https://evil.example", "null", "http://127.0.0.1:8081"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await open_socket(client, origin_header=origin)
            assert handshake.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
            await open_socket(client, origin_header=None)  # no Origin at all
        assert handshake.value.status == 403

        # Tickets that do not open this call, however presented.
        expired = await _ticket_issued_long_ago(client, clinic["patient"].user_id, consultation)
        other_call = await get_ticket(client, doctor_account, other)  # valid, for the waiting patient's call
        join_with = {"consultation_id": consultation, "type": "join"}
        for message, code, errors in [
            (None, 1008, ["join_timeout"]),  # silence
            ({"type": "chat", "text": "hello?"}, 1008, ["join_first"]),
            (join_with, 1008, ["invalid_message"]),  # no ticket
            ({**join_with, "ticket": ""}, 1008, ["invalid_message"]),
            ({**join_with, "ticket": "A" * 43}, 4401, ["invalid_ticket"]),  # a stranger's guess
            ({**join_with, "ticket": expired}, 4401, ["invalid_ticket"]),
            ({**join_with, "ticket": used_ticket}, 4401, ["invalid_ticket"]),  # reused
            ({**join_with, "ticket": other_call}, 4401, ["invalid_ticket"]),  # another consultation's
            ("{not json", 1008, ["malformed_json"]),
            ({"type": "spy", "consultation_id": consultation}, 1008, ["unknown_type"]),
            ("x" * (MAX_MESSAGE_BYTES + 1), 1009, []),  # oversized: aiohttp closes as it reads
        ]:
            assert await _refused(await open_socket(client), message) == (code, errors), message
        # A flood before joining: closed at the first message, nothing else is read.
        flood = await open_socket(client)
        for _ in range(200):
            await flood.send({"type": "media_state", "muted": True, "camera": True})
        assert await _refused(flood, None) == (1008, ["join_first"])

        # REST: a patient before admission and a stranger get no ticket at all.
        not_admitted = await client.post(f"/api/v1/consultations/{other}/join", headers=other_patient.auth)
        assert not_admitted.status == 409
        assert (await not_admitted.json())["code"] == "not_admitted"
        assert (await client.post(f"/api/v1/consultations/{consultation}/join",
                                  headers=other_patient.auth)).status == 404
        stranger = await register_patient(client)
        assert (await client.post(f"/api/v1/consultations/{consultation}/join", headers=stranger.auth)).status == 404

        # The call went on, undisturbed: nobody new in the room, no event about any of it, media still flowing.
        frames = (len(a.received["video"]), len(b.received["video"]))
        await _until(lambda: len(a.received["video"]) >= frames[0] + 15 and len(b.received["video"]) >= frames[1] + 15,
                     "15 more video frames each way after the attempts")
        assert (len(doctor.events), len(patient.events)) == seen
        room = client.app[keys.calls].room(uuid.UUID(consultation))
        assert room is not None
        assert sorted(p.seat.role.value for p in room.connected()) == ["patient", "physician"]
        assert len(room.media.peers) == 2  # type: ignore[attr-defined]  # the in-process call
        assert await status_of(client, consultation) is ConsultationStatus.in_call
        assert await status_of(client, other) is ConsultationStatus.waiting
    finally:
        await stop_media(a)
        await stop_media(b)
    await doctor.close()
    await patient.close()


async def _ticket_issued_long_ago(client: Any, user_id: str, consultation: str) -> str:
    async with transaction(client.app[keys.sessions]) as session:
        token, _ = await tickets.issue(session, consultation_id=uuid.UUID(consultation), user_id=uuid.UUID(user_id),
                                       role=CallRole.patient, now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2),
                                       ttl=dt.timedelta(seconds=30))
    return token


async def test_signaling_bad_messages_get_errors_until_abuse_closes_with_1008(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch)
    client, consultation = clinic["client"], clinic["consultation"]

    bad: list[dict[str, Any] | str | bytes] = [
        "{oops", {"type": "shout"}, {"type": "media_state", "muted": "yes", "camera": True},
        {"type": "answer", "sdp": "v=0"}, {"type": "join", "consultation_id": consultation, "ticket": "x" * 43},
        b"\x00binary", {"type": "offer", "sdp": "not sdp at all"},
        {"type": "ice", "candidate": {"candidate": "candidate:garbage", "sdpMid": "0"}},
        {"type": "chat", "text": "<script>alert(1)</script>"},  # empty once cleaned
    ]
    for message in bad:
        if isinstance(message, bytes):
            await doctor.ws.send_bytes(message)
        elif isinstance(message, str):
            await doctor.ws.send_str(message)
        else:
            await doctor.send(message)
    await doctor.expect("error", count=len(bad), what="an error event for each bad message")
    assert [e["code"] for e in doctor.of("error")] == [
        "malformed_json", "unknown_type", "invalid_message", "unexpected_answer", "already_joined",
        "invalid_message", "negotiation_failed", "negotiation_failed", "invalid_message"]
    assert all("<script>" not in e["message"] for e in doctor.of("error"))

    # Still in the call: a good message still works.
    await doctor.send({"type": "media_state", "muted": True, "camera": True})
    assert (await patient.expect("media_state"))["muted"] is True

    # The tenth bad message closes the socket (policy violation); the others see a reconnecting participant.
    await doctor.send({"type": "nope"})
    assert await doctor.closed() == 1008
    assert len(doctor.of("error")) == 10
    await patient.expect("participant_reconnecting")
    assert await status_of(client, consultation) is ConsultationStatus.in_call
    await patient.close()


async def test_signaling_flood_is_rate_limited_then_closed_and_oversize_closes_1009(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch)

    started = asyncio.get_running_loop().time()
    for number in range(150):
        await doctor.send({"type": "media_state", "muted": bool(number % 2), "camera": True})
    assert await doctor.closed() == 1008
    elapsed = asyncio.get_running_loop().time() - started
    assert {e["code"] for e in doctor.of("error")} == {"rate_limited"}
    assert len(doctor.of("error")) == 10
    await patient.expect("participant_reconnecting")
    passed = len(patient.of("media_state"))
    assert 40 <= passed <= 40 + 20 * elapsed + 1, (passed, elapsed)  # the burst, then 20 a second

    # A message over 64 KiB from a joined participant: aiohttp closes the socket with 1009 (message too big).
    await patient.send({"type": "chat", "text": "x" * 10, "padding": "y" * MAX_MESSAGE_BYTES})
    assert await patient.closed() == 1009


async def test_signaling_second_connection_of_a_participant_replaces_the_first(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    doctor = await join(client, clinic["doctor"], consultation)
    first = await join(client, clinic["patient"], consultation)
    second = await join(client, clinic["patient"], consultation)  # another tab, or the same browser rejoining
    assert await first.closed() == 4409
    room = client.app[keys.calls].room(uuid.UUID(consultation))
    assert room is not None
    assert len(room.participants()) == 2
    assert len(room.media.peers) == 2  # type: ignore[attr-defined]  # the old peer is gone with the old socket
    joined = doctor.of("participant_joined")
    assert len(joined) == 2
    assert joined[0]["participant"]["participant_id"] == joined[1]["participant"]["participant_id"]
    assert not doctor.of("participant_reconnecting")  # a replacement is not a drop
    await second.send({"type": "leave"})
    assert await second.closed() == 1000
    assert (await doctor.expect("participant_left"))["reason"] == "left"
    await doctor.close()


async def test_signaling_one_address_holds_a_bounded_number_of_sockets(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, signaling_sockets_per_address=2)
    client = clinic["client"]
    first, second = await open_socket(client), await open_socket(client)  # two tabs, not joined yet
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await open_socket(client)
    assert refused.value.status == 429  # refused before the upgrade, with a problem document
    await first.close()
    await _until(lambda: client.app[keys.signaling_sockets].open("127.0.0.1") == 1, "the closed socket counted out")
    third = await open_socket(client)
    for socket in (second, third):
        await socket.close()
    await _until(lambda: client.app[keys.signaling_sockets].open("127.0.0.1") == 0, "every socket counted out")
