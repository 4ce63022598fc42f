"""The live call through the real app: tickets, the WebSocket, two aiortc clients as the browsers, the server's peers.

Media stays on 127.0.0.1: `keep_ice_on_loopback` makes aioice gather only 127.0.0.1 (it never offers loopback by
itself), no ICE servers are configured (the clients use none either), and every SDP is checked to carry only
127.0.0.1 candidates. The clients send synthetic VP8 and Opus (the generators of test_media_passthrough) and
use the passthrough decoder too, so what they receive can be compared byte for byte with what the other sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCSessionDescription
from sqlalchemy import select

from media import loopback, passthrough
from media.recording.models import Recording, RecordingState
from server import keys
from server.db.base import utcnow
from server.db.engine import transaction
from server.scheduling import services as scheduling
from server.scheduling.models import Consultation, ConsultationStatus
from signaling.handler import PATH
from signaling.models import CallChatMessage
from signaling.origins import origin_of
from tests.consent_helpers import sign_consents
from tests.factories import Account, register_patient
from tests.integration.test_media_passthrough import (
    Client,
    _assert_forwarded_unchanged,
    _client,
    _collect,
    _until,
)
from tests.scheduling_helpers import benign_answers, booked_clinic, booking, free_slot

pytestmark = pytest.mark.slow

DEVICE = {"camera": True, "microphone": True, "speaker": True}
TIMEOUT = 10.0


def keep_ice_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE on 127.0.0.1 only, for the server's peers and the test's clients alike (media.loopback's pin, undone
    after the test)."""
    for target, name, replacement in loopback.patches():
        monkeypatch.setattr(target, name, replacement)


def origin(client: TestClient) -> str:
    """The Origin a browser on the clinic's pages sends (the app's public URL; not the test server's port)."""
    value = origin_of(client.app[keys.settings].public_url)
    assert value is not None
    return value


def candidate_addresses(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


@dataclass
class Socket:
    """A participant's signaling socket; every event it receives is kept, in order."""

    ws: aiohttp.ClientWebSocketResponse
    events: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def start(self) -> Socket:
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(message.data))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == type_]

    async def expect(self, type_: str, *, count: int = 1, what: str | None = None) -> dict[str, Any]:
        """The `count`-th event of this type (waiting for it)."""
        await _until(lambda: len(self.of(type_)) >= count, what or f"a {type_!r} event")
        return self.of(type_)[count - 1]

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def closed(self) -> int | None:
        """Wait until the server has closed the socket; its close code."""
        assert self.reader is not None
        await asyncio.wait_for(asyncio.shield(self.reader), TIMEOUT)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await asyncio.wait_for(self.reader, TIMEOUT)


async def open_socket(client: TestClient, *, origin_header: str | None = "") -> Socket:
    headers = {} if origin_header is None else {"Origin": origin_header or origin(client)}
    return Socket(await client.ws_connect(PATH, headers=headers, autoping=True)).start()


async def get_ticket(client: TestClient, account: Account, consultation: str) -> str:
    response = await client.post(f"/api/v1/consultations/{consultation}/join", headers=account.auth)
    assert response.status == 201, await response.text()
    return str((await response.json())["ticket"])


async def present(client: TestClient, consultation: str, ticket: str) -> Socket:
    """A socket that has sent `join` with this ticket (what comes back is the caller's to expect)."""
    socket = await open_socket(client)
    await socket.send({"type": "join", "consultation_id": consultation, "ticket": ticket})
    return socket


async def join(client: TestClient, account: Account, consultation: str) -> Socket:
    """Ticket, socket, `join`: the participant is in the room."""
    socket = await present(client, consultation, await get_ticket(client, account, consultation))
    await socket.expect("joined")
    return socket


async def physician_ends(doctor: Socket, *others: Socket) -> None:
    """The physician ends the consultation: everyone gets `ended` and the server closes each socket (1000)."""
    await doctor.send({"type": "end"})
    for socket in (doctor, *others):
        assert (await socket.expect("ended"))["reason"] == "ended_by_physician"
        assert await socket.closed() == 1000


async def connect_media(socket: Socket, *, shade: int, pitch: float, answers: int = 1,
                        video: str = "sendrecv") -> Client:
    """An aiortc client as the browser: it offers (with all its candidates), the server answers over the socket."""
    assert passthrough.is_installed(), "the app's media engine installs the passthrough decoder"
    client = _client(shade=shade, pitch=pitch)
    client.transceivers["video"].direction = video
    await client.pc.setLocalDescription(await client.pc.createOffer())
    await socket.send({"type": "offer", "sdp": client.pc.localDescription.sdp})
    answer = await socket.expect("answer", count=answers)
    await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    addresses = candidate_addresses(client.pc.localDescription.sdp) | candidate_addresses(answer["sdp"])
    assert addresses == {"127.0.0.1"}, f"ICE left loopback: {addresses}"
    for kind, transceiver in client.transceivers.items():
        if transceiver.receiver.track is not None:  # none for a kind the client only sends
            client.tasks.append(asyncio.create_task(_collect(transceiver.receiver.track, client.received[kind])))
    return client


async def stop_media(client: Client) -> None:
    await client.pc.close()
    await asyncio.wait_for(asyncio.gather(*client.tasks), TIMEOUT)


async def check_in(clinic: dict[str, Any], patient: Account | None = None, consultation: str | None = None) -> None:
    response = await clinic["client"].post(
        f"/api/v1/consultations/{consultation or clinic['consultation']}/check-in",
        headers=(patient or clinic["patient"]).auth,
        json={"answers": benign_answers(clinic["catalogue"]["checkin"]), "device_check": DEVICE})
    assert response.status == 200, await response.text()


async def admit(clinic: dict[str, Any], consultation: str | None = None, doctor: Account | None = None) -> None:
    response = await clinic["client"].post(f"/api/v1/consultations/{consultation or clinic['consultation']}/admit",
                                           headers=(doctor or clinic["doctor"]).auth)
    assert response.status == 200, await response.text()


async def another_consultation(clinic: dict[str, Any], name: str, *, admitted: bool = True) -> tuple[Account, str]:
    """A second patient (consented) booked with the same physician and checked in; admitted unless told not."""
    client = clinic["client"]
    patient = await register_patient(client, full_name=name)
    await sign_consents(client, patient)
    starts_at = await free_slot(client, patient, clinic["physician_id"])
    made = await client.post("/api/v1/consultations", headers=patient.auth, json=booking(
        clinic["physician_id"], starts_at, benign_answers(clinic["catalogue"]["respiratory"])))
    assert made.status == 201, await made.text()
    consultation = str((await made.json())["id"])
    await check_in(clinic, patient, consultation)
    if admitted:
        await admit(clinic, consultation)
    return patient, consultation


async def live_clinic(aiohttp_client: Any, tmp_path: Path, database_url: str, **settings: Any) -> dict[str, Any]:
    """A booked consultation whose patient has checked in and been admitted: the call may start."""
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, **settings)
    await check_in(clinic)
    await admit(clinic)
    return clinic


async def joined_pair(aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
                      **settings: Any) -> tuple[dict[str, Any], Socket, Socket]:
    """A live clinic whose physician and admitted patient have both joined the call's socket (ICE on loopback)."""
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, **settings)
    doctor = await join(clinic["client"], clinic["doctor"], clinic["consultation"])
    patient = await join(clinic["client"], clinic["patient"], clinic["consultation"])
    return clinic, doctor, patient


async def recordings_of(client: TestClient, consultation: str) -> list[Recording]:
    async with client.app[keys.read_sessions]() as session:
        return list((await session.scalars(select(Recording).where(
            Recording.consultation_id == uuid.UUID(consultation)).order_by(Recording.started_at))).all())


async def status_of(client: TestClient, consultation: str) -> ConsultationStatus:
    async with client.app[keys.read_sessions]() as session:
        row = await session.get(Consultation, uuid.UUID(consultation), populate_existing=True)
        assert row is not None
        return row.status


async def until_status(client: TestClient, consultation: str, status: ConsultationStatus) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (current := await status_of(client, consultation)) is not status:
        assert time.monotonic() < deadline, f"the consultation stayed {current.value}, not {status.value}"
        await asyncio.sleep(0.1)


def frames(client: Client, kind: str) -> Callable[[], int]:
    return lambda: len(client.received[kind])


async def test_signaling_call_forwards_media_unchanged_relays_keyframes_and_ends(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    registry = client.app[keys.calls]

    doctor = await join(client, clinic["doctor"], consultation)
    joined = doctor.of("joined")[0]
    assert joined["role"] == "physician"
    assert joined["participants"] == []
    assert joined["recording"] is True
    patient = await join(client, clinic["patient"], consultation)
    assert [p["role"] for p in patient.of("joined")[0]["participants"]] == ["physician"]
    arrived = (await doctor.expect("participant_joined"))["participant"]
    assert arrived["role"] == "patient"
    assert arrived["name"] == "Пётр Ожидающий"
    assert await status_of(client, consultation) is ConsultationStatus.in_call

    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0)
    recorded: list[tuple[str, str]] = []
    room = registry.room(uuid.UUID(consultation))
    assert room is not None
    room.media.add_sink(lambda peer, kind, packet: recorded.append((peer, kind)))  # type: ignore[attr-defined]  # the in-process call
    try:
        await _until(lambda: all(len(c.received["video"]) >= 20 and len(c.received["audio"]) >= 40 for c in (a, b)),
                     "20 video and 40 audio frames at each client")
        assert {kind for _, kind in recorded} == {"audio", "video"}

        # The patient's browser loses a picture: its PLI reaches the physician's camera, which sends a keyframe.
        requests_before, b_frames_before = a.video.keyframe_requests, len(b.received["video"])
        assert await passthrough.request_keyframe(b.transceivers["video"].receiver)
        await _until(lambda: a.video.keyframe_requests > requests_before, "the physician's sender to get the PLI")

        def b_got_a_forced_keyframe() -> bool:
            forced = {s.data for s in a.video.sent if s.forced}
            return any(r.keyframe and r.data in forced for r in b.received["video"][b_frames_before:])

        await _until(b_got_a_forced_keyframe, "the patient to receive the keyframe sent on request")

        # Mute, chat (cleaned and kept), and a consent withdrawal: the others see each.
        await patient.send({"type": "media_state", "muted": True, "camera": False})
        state = await doctor.expect("media_state")
        assert (state["muted"], state["camera"]) == (True, False)
        await patient.send({"type": "chat", "text": "<b>Доктор</b>, у меня <script>x()</script>кашель"})
        for socket in (doctor, patient):
            said = await socket.expect("chat")
            assert said["text"] == "Доктор, у меня кашель"
            assert said["role"] == "patient"
        async with client.app[keys.read_sessions]() as session:
            kept = (await session.scalars(select(CallChatMessage))).one()
        assert kept.text == "Доктор, у меня кашель"
        assert str(kept.consultation_id) == consultation

        # The physician pauses the recording (the patient may not) and resumes it: a new recording begins.
        [first] = await recordings_of(client, consultation)
        assert first.state is RecordingState.recording
        await patient.send({"type": "pause_recording", "paused": True})
        assert (await patient.expect("error"))["code"] == "cannot_pause"
        await doctor.send({"type": "pause_recording", "paused": True})
        for socket in (doctor, patient):
            assert await socket.expect("recording") == {"type": "recording", "active": False, "paused": True}
        assert [(r.state, r.stop_reason) for r in await recordings_of(client, consultation)] == [
            (RecordingState.stopped, "paused")]
        await doctor.send({"type": "pause_recording", "paused": False})
        for socket in (doctor, patient):
            assert (await socket.expect("recording", count=2))["active"] is True
        assert [r.state for r in await recordings_of(client, consultation)] == [RecordingState.stopped,
                                                                                RecordingState.recording]

        mine = await (await client.get("/api/v1/me/consents", headers=clinic["patient"].auth)).json()
        recording = next(c for c in mine["consents"] if c["purpose"] == "recording")
        withdrawn_at = asyncio.get_running_loop().time()
        withdrawn = await client.post(f"/api/v1/consents/{recording['id']}/withdraw", headers=clinic["patient"].auth)
        assert withdrawn.status == 200
        for socket in (doctor, patient):
            assert (await socket.expect("recording", count=3))["active"] is False
        second = (await recordings_of(client, consultation))[1]
        assert (second.state, second.stop_reason) == (RecordingState.stopped, "consent_withdrawn")
        assert asyncio.get_running_loop().time() - withdrawn_at < 5  # stopped, segments on disk, within 5 s

        # Only the physician ends the consultation.
        await patient.send({"type": "end"})
        assert (await patient.expect("error", count=2))["code"] == "cannot_end"
        await physician_ends(doctor, patient)
    finally:
        await stop_media(a)
        await stop_media(b)
    assert await status_of(client, consultation) is ConsultationStatus.completed
    await _until(lambda: registry.rooms == () and registry.engine.calls == 0,  # type: ignore[attr-defined]  # in-process
                 "the room and its peers to close")

    for sender, receiver in ((a, b), (b, a)):
        _assert_forwarded_unchanged(receiver.received["video"], sender.video.sent, minimum=20)
        _assert_forwarded_unchanged(receiver.received["audio"], sender.audio.sent, minimum=40)
    assert b.received["video"][0].keyframe, "video starts with a keyframe: the relay waits for one"


async def test_signaling_participant_who_drops_rejoins_with_a_new_ticket_and_gets_video_again(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch)
    client, consultation = clinic["client"], clinic["consultation"]
    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0)
    clients = [a, b]
    try:
        await _until(lambda: len(a.received["video"]) >= 10 and len(b.received["video"]) >= 10, "video both ways")
        patient_id = doctor.of("participant_joined")[0]["participant"]["participant_id"]

        # The patient's network drops: socket and media gone at once, no `leave`.
        await patient.close()
        await stop_media(b)
        assert (await doctor.expect("participant_reconnecting"))["participant_id"] == patient_id
        assert await status_of(client, consultation) is ConsultationStatus.in_call  # within the grace

        started = time.monotonic()
        patient = await join(client, clinic["patient"], consultation)
        b2 = await connect_media(patient, shade=200, pitch=550.0)
        clients.append(b2)
        a_before = len(a.received["video"])
        await _until(lambda: bool(b2.received["video"]), "the rejoined patient to see the physician again")
        patient_sees = time.monotonic() - started
        await _until(lambda: len(a.received["video"]) > a_before and any(
            r.data in {s.data for s in b2.video.sent} for r in a.received["video"][a_before:]),
            "the physician to see the rejoined patient's new camera")
        physician_sees = time.monotonic() - started
        assert b2.received["video"][0].keyframe, "the rejoined patient's first frame is a (requested) keyframe"
        rejoined = doctor.of("participant_joined")[-1]["participant"]
        assert rejoined["participant_id"] == patient_id  # the same participant, back
        assert rejoined["state"] == "connected"
        # Rejoining means a new ticket, a new socket and a new server peer (aiortc has no ICE restart).
        assert patient_sees < 3.0, f"video came back after {patient_sees:.1f} s"
        assert physician_sees < 3.0, f"the physician saw the patient again after {physician_sees:.1f} s"
    finally:
        for media in clients:
            await stop_media(media)
    await doctor.close()
    await patient.close()


async def test_signaling_a_browser_receiving_no_video_still_sends_it_and_hears_the_other(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch)
    client, consultation = clinic["client"], clinic["consultation"]
    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0, video="sendonly")
    try:
        await _until(lambda: len(a.received["video"]) >= 10 and len(b.received["audio"]) >= 20,
                     "the patient's video at the physician, the physician's sound at the patient")
        room = client.app[keys.calls].room(uuid.UUID(consultation))
        assert room is not None
        peer_id = next(p.peer_id for p in room.connected() if p.seat.role.value == "patient")
        # Nothing would read the physician's video towards the patient: that track is ended, so it neither
        # queues frames nor keeps asking the physician's camera for keyframes.
        assert room.media.peer(peer_id).slots[0]["video"].readyState == "ended"  # type: ignore[attr-defined]  # in-process
        assert room.media.peer(peer_id).slots[0]["audio"].readyState == "live"  # type: ignore[attr-defined]
    finally:
        await stop_media(a)
        await stop_media(b)
    await doctor.close()
    await patient.close()


async def test_signaling_everyone_gone_past_the_grace_interrupts_and_their_return_resumes(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, call_grace_seconds=1)
    client, consultation = clinic["client"], clinic["consultation"]
    registry = client.app[keys.calls]
    doctor = await join(client, clinic["doctor"], consultation)
    patient = await join(client, clinic["patient"], consultation)
    patient_id = doctor.of("participant_joined")[0]["participant"]["participant_id"]

    await patient.close()
    await doctor.expect("participant_reconnecting")
    left = await doctor.expect("participant_left", what="the patient's grace to run out")
    assert left == {"type": "participant_left", "participant_id": patient_id, "reason": "timeout"}
    assert await status_of(client, consultation) is ConsultationStatus.in_call  # the physician is still there

    await doctor.send({"type": "leave"})
    assert await doctor.closed() == 1000
    await until_status(client, consultation, ConsultationStatus.interrupted)
    assert registry.room(uuid.UUID(consultation)) is None

    # Both come back (tickets are issued for an interrupted call): the consultation is in_call again.
    doctor = await join(client, clinic["doctor"], consultation)
    assert await status_of(client, consultation) is ConsultationStatus.interrupted  # alone, nothing resumes
    patient = await join(client, clinic["patient"], consultation)
    await until_status(client, consultation, ConsultationStatus.in_call)

    # The service moves only between these two states, and only when the move applies.
    async with transaction(client.app[keys.sessions]) as session:
        assert await scheduling.set_call_state(session, consultation_id=uuid.UUID(consultation),
                                               target=ConsultationStatus.in_call, now=utcnow()) is None
        with pytest.raises(ValueError, match="completed"):
            await scheduling.set_call_state(session, consultation_id=uuid.UUID(consultation),
                                            target=ConsultationStatus.completed, now=utcnow())
    await doctor.close()
    await patient.close()


async def test_signaling_shutdown_closes_sockets_and_peers(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch)
    client, consultation = clinic["client"], clinic["consultation"]
    a = await connect_media(doctor, shade=90, pitch=330.0)
    b = await connect_media(patient, shade=170, pitch=440.0)
    try:
        # Connected (a receiver that never started would wait for ever in the test's collector).
        await _until(lambda: bool(a.received["video"]) and bool(b.received["video"]), "video both ways")
        await client.app[keys.calls].close()  # what on_shutdown does
        assert await doctor.closed() == 1001
        assert await patient.closed() == 1001
        assert client.app[keys.calls].engine.calls == 0  # type: ignore[attr-defined]  # the in-process engine
        assert await status_of(client, consultation) is ConsultationStatus.interrupted
        refused = await open_socket(client)
        await refused.send({"type": "join", "consultation_id": consultation,
                            "ticket": await get_ticket(client, clinic["doctor"], consultation)})
        assert await refused.closed() == 1001
        assert refused.of("error")[0]["code"] == "shutting_down"
    finally:
        await stop_media(a)
        await stop_media(b)


async def test_signaling_finish_outside_the_call_ends_it_for_everyone(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic, doctor, patient = await joined_pair(aiohttp_client, tmp_path, database_url, monkeypatch)
    client, consultation = clinic["client"], clinic["consultation"]
    finished = await client.post(f"/api/v1/consultations/{consultation}/finish", headers=clinic["doctor"].auth)
    assert finished.status == 200
    for socket in (doctor, patient):
        assert (await socket.expect("ended"))["reason"] == "completed"
        assert await socket.closed() == 1000
    assert await status_of(client, consultation) is ConsultationStatus.completed
    assert client.app[keys.calls].room(uuid.UUID(consultation)) is None
