"""The room's rules with stand-ins for the media, the database and the sockets (the real ones: integration tests)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from media.calls import PeerStateListener, UnknownPeer
from media.recording.capture import RecordingSpec
from media.recording.storage import StorageLocation
from media.workers import MediaUnavailable
from server.audit.services import AuditContext
from signaling.calls import Seat
from signaling.models import CallRole
from signaling.rooms import CannotEnd, RecordingNotAllowed, RoleTaken, Room

CONSULTATION, PATIENT, PHYSICIAN = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


@dataclass
class FakeCall:
    peers: set[str] = field(default_factory=set)
    roles: dict[str, str] = field(default_factory=dict)
    closed: bool = False
    failing: bool = False
    recordings: list[str] = field(default_factory=list)
    failing_recording: bool = False

    async def add_peer(self, peer_id: str, role: str = "") -> None:
        if self.failing:
            raise MediaUnavailable("no media worker")
        self.peers.add(peer_id)
        self.roles[peer_id] = role

    async def answer(self, peer_id: str, offer_sdp: str) -> str:
        if peer_id not in self.peers:
            raise UnknownPeer(peer_id)
        return "answer"

    async def add_candidate(self, peer_id: str, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        pass

    async def remove_peer(self, peer_id: str) -> None:
        self.peers.discard(peer_id)

    async def start_recording(self, spec: RecordingSpec, location: StorageLocation) -> None:
        if self.failing_recording:
            raise MediaUnavailable("the media worker died")
        self.recordings.append(f"start:{spec.recording_id}")

    async def stop_recording(self, reason: str) -> None:
        self.recordings.append(f"stop:{reason}")

    async def close(self) -> None:
        self.closed = True
        self.peers.clear()


@dataclass
class FakeEngine:
    call: FakeCall = field(default_factory=FakeCall)
    on_state: PeerStateListener | None = None

    def open_call(self, call_id: uuid.UUID, on_peer_state: PeerStateListener) -> FakeCall:
        self.on_state = on_peer_state
        return self.call

    async def close(self) -> None:
        pass


@dataclass
class FakeStore:
    done: list[str] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)
    refuse_end: bool = False
    withdrawn: bool = False  # what the consent gate says when a recording is to start

    async def resume(self, consultation_id: uuid.UUID) -> None:
        self.done.append("resume")

    async def interrupt(self, consultation_id: uuid.UUID) -> None:
        self.done.append("interrupt")

    async def end(self, seat: Seat, ctx: AuditContext) -> None:
        if self.refuse_end:
            raise CannotEnd("a waiting consultation cannot become completed")
        self.done.append("end")

    async def save_chat(self, seat: Seat, text: str) -> tuple[uuid.UUID, dt.datetime]:
        self.done.append(f"chat:{text}")
        return uuid.uuid4(), dt.datetime.now(dt.UTC)

    async def start_recording(self, consultation_id: uuid.UUID, patient_id: uuid.UUID
                              ) -> tuple[RecordingSpec, StorageLocation]:
        if self.withdrawn:
            raise RecordingNotAllowed()
        number = len([r for r in self.recordings if r.startswith("recording:")])
        self.recordings.append(f"recording:{number}")
        return RecordingSpec(f"rec-{number}", bytes(32)), StorageLocation("/nonexistent")

    async def recording_stopped(self, recording_id: str, reason: str) -> None:
        self.recordings.append(f"stopped:{recording_id}:{reason}")


@dataclass
class FakeConnection:
    events: list[dict[str, Any]] = field(default_factory=list)
    closed_with: int | None = None

    def send(self, event: dict[str, Any]) -> None:
        assert self.closed_with is None, "sent after close"
        self.events.append(event)

    def close(self, code: int, reason: str = "") -> None:
        if self.closed_with is None:
            self.closed_with = code

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


def seat(role: CallRole, *, may_record: bool = True, who: str = "") -> Seat:
    user = uuid.uuid5(CONSULTATION, role.value + who)
    return Seat(CONSULTATION, PATIENT, PHYSICIAN, user, role, f"{role.value} name", may_record)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def room(engine: FakeEngine, store: FakeStore, *, grace: float = 60.0,
         on_closed: Callable[[Room], None] = lambda room: None) -> Room:
    return Room(CONSULTATION, patient_id=PATIENT, engine=engine, store=store, grace=grace, on_closed=on_closed)


async def test_room_resumes_the_consultation_once_physician_and_patient_are_both_in(engine: FakeEngine,
                                                                                    store: FakeStore) -> None:
    call = room(engine, store)
    doctor, patient = FakeConnection(), FakeConnection()
    await call.attach(seat(CallRole.physician), doctor)
    assert store.done == []
    await call.attach(seat(CallRole.patient), patient)
    assert store.done == ["resume"]
    assert len(engine.call.peers) == 2
    assert doctor.types() == ["joined", "participant_joined"]
    assert patient.types() == ["joined"]
    assert patient.events[0]["participants"][0]["role"] == "physician"


async def test_room_failed_media_asks_the_participant_to_rejoin(engine: FakeEngine, store: FakeStore) -> None:
    call = room(engine, store)
    doctor, patient = FakeConnection(), FakeConnection()
    await call.attach(seat(CallRole.physician), doctor)
    participant = await call.attach(seat(CallRole.patient), patient)
    assert engine.on_state is not None
    assert participant.peer_id is not None
    engine.on_state(participant.peer_id, "closed")  # a peer the room closed itself: nothing to say
    assert patient.closed_with is None
    engine.on_state(participant.peer_id, "failed")
    assert patient.events[-1]["code"] == "media_failed"
    assert patient.closed_with == 4410
    await call.detach(participant, patient, left=False)
    assert doctor.types()[-1] == "participant_reconnecting"
    assert len(engine.call.peers) == 1


async def test_room_only_the_physician_ends_and_a_refused_end_changes_nothing(engine: FakeEngine,
                                                                              store: FakeStore) -> None:
    closed: list[Room] = []
    call = room(engine, store, on_closed=closed.append)
    doctor, patient = FakeConnection(), FakeConnection()
    physician = await call.attach(seat(CallRole.physician), doctor)
    patient_participant = await call.attach(seat(CallRole.patient), patient)
    with pytest.raises(CannotEnd):
        await call.end(patient_participant, AuditContext())
    store.refuse_end = True
    with pytest.raises(CannotEnd):
        await call.end(physician, AuditContext())
    assert not call.closed
    store.refuse_end = False
    await call.end(physician, AuditContext())
    assert store.done == ["resume", "end"]
    for connection in (doctor, patient):
        assert connection.types()[-1] == "ended"
        assert connection.closed_with == 1000
    assert call.closed
    assert engine.call.closed
    assert closed == [call]


async def test_room_nobody_back_within_the_grace_interrupts_and_closes(engine: FakeEngine, store: FakeStore) -> None:
    closed = asyncio.Event()
    call = room(engine, store, grace=0.05, on_closed=lambda _: closed.set())
    doctor, patient = FakeConnection(), FakeConnection()
    physician = await call.attach(seat(CallRole.physician), doctor)
    patient_participant = await call.attach(seat(CallRole.patient), patient)
    await call.detach(patient_participant, patient, left=False)
    await call.detach(physician, doctor, left=True)
    await asyncio.wait_for(closed.wait(), 5)
    assert store.done == ["resume", "interrupt"]
    assert engine.call.closed


async def test_room_a_return_within_the_grace_keeps_the_call(engine: FakeEngine, store: FakeStore) -> None:
    call = room(engine, store, grace=0.2)
    doctor = FakeConnection()
    physician = await call.attach(seat(CallRole.physician), doctor)
    await call.detach(physician, doctor, left=False)
    again = FakeConnection()
    back = await call.attach(seat(CallRole.physician), again)
    await asyncio.sleep(0.4)
    assert not call.closed
    assert back is physician  # the same participant, with its id, since and state
    assert "interrupt" not in store.done
    await call.close()
    assert again.closed_with == 1001


async def test_room_recording_follows_the_latest_gate_and_a_withdrawal(engine: FakeEngine, store: FakeStore) -> None:
    call = room(engine, store)
    doctor, patient = FakeConnection(), FakeConnection()
    await call.attach(seat(CallRole.physician), doctor)
    assert call.recording is True
    await call.set_recording(False)  # the patient withdrew consent to recording
    assert doctor.events[-1] == {"type": "recording", "active": False, "paused": False}
    await call.set_recording(False)
    assert doctor.types().count("recording") == 1  # said once
    await call.attach(seat(CallRole.patient, may_record=True), patient)  # signed again meanwhile
    assert patient.events[0]["recording"] is True
    assert doctor.events[-1] == {"type": "recording", "active": True, "paused": False}


async def test_room_records_from_when_both_are_in_until_a_withdrawal_a_pause_or_the_end(
        engine: FakeEngine, store: FakeStore) -> None:
    call = room(engine, store)
    doctor, patient = FakeConnection(), FakeConnection()
    physician = await call.attach(seat(CallRole.physician), doctor)
    assert engine.call.recordings == []  # the physician alone: the consultation is not in_call yet
    await call.attach(seat(CallRole.patient), patient)
    assert engine.call.recordings == ["start:rec-0"]

    await call.set_recording(False)  # withdrawn: the recorder stops at once, and the recording is handed on
    assert engine.call.recordings[-1] == "stop:consent_withdrawn"
    assert "stopped:rec-0:consent_withdrawn" in store.recordings
    await call.set_recording(True)  # signed again
    assert engine.call.recordings[-1] == "start:rec-1"

    with pytest.raises(CannotEnd):
        await call.pause_recording(call.participants()[1], True)  # only the physician pauses
    await call.pause_recording(physician, True)
    assert engine.call.recordings[-1] == "stop:paused"
    assert patient.events[-1] == {"type": "recording", "active": False, "paused": True}
    await call.pause_recording(physician, False)
    assert engine.call.recordings[-1] == "start:rec-2"

    await call.end(physician, AuditContext())
    assert engine.call.recordings[-1] == "stop:ended"
    assert store.recordings[-1] == "stopped:rec-2:ended"


async def test_room_a_recording_the_media_cannot_start_is_stopped_at_once_and_the_call_goes_on(
        engine: FakeEngine, store: FakeStore) -> None:
    engine.call.failing_recording = True
    call = room(engine, store)
    await call.attach(seat(CallRole.physician), FakeConnection())
    patient = await call.attach(seat(CallRole.patient), FakeConnection())
    assert patient in call.connected()  # the consultation matters more than its recording
    assert store.recordings == ["recording:0", "stopped:rec-0:media_failed"]


async def test_room_a_recording_is_not_started_when_the_gate_says_the_consent_was_withdrawn_meanwhile(
        engine: FakeEngine, store: FakeStore) -> None:
    store.withdrawn = True  # the tickets were checked before the withdrawal, the recording starts after it
    call = room(engine, store)
    doctor = FakeConnection()
    await call.attach(seat(CallRole.physician), doctor)
    await call.attach(seat(CallRole.patient), FakeConnection())
    assert engine.call.recordings == []
    assert call.recording is False
    assert doctor.events[-1] == {"type": "recording", "active": False, "paused": False}


async def test_room_seats_one_invited_guest_beside_physician_and_patient(engine: FakeEngine, store: FakeStore) -> None:
    call = room(engine, store)
    connections = {role: FakeConnection() for role in CallRole}
    seated = {role: await call.attach(seat(role), connections[role]) for role in CallRole}
    assert sorted(engine.call.roles.values()) == ["guest", "patient", "physician"]  # each peer knows its slot
    assert {p.seat.role for p in call.connected()} == set(CallRole)
    guest_joined = connections[CallRole.guest].events[0]
    assert guest_joined["type"] == "joined"
    assert {p["role"] for p in guest_joined["participants"]} == {"physician", "patient"}
    assert connections[CallRole.patient].types().count("participant_joined") == 1  # the guest, after the patient

    other_guest = FakeConnection()
    with pytest.raises(RoleTaken):
        await call.attach(seat(CallRole.guest, who="second"), other_guest)
    assert other_guest.events == []
    assert len(call.participants()) == 3

    await call.detach(seated[CallRole.guest], connections[CallRole.guest], left=True)
    second = await call.attach(seat(CallRole.guest, who="second"), other_guest)  # the place is free again
    assert second.seat.role is CallRole.guest


async def test_room_a_participant_the_media_cannot_take_frees_the_place(engine: FakeEngine, store: FakeStore) -> None:
    closed: list[Room] = []
    call = room(engine, store, on_closed=closed.append)
    engine.call.failing = True
    with pytest.raises(MediaUnavailable):
        await call.attach(seat(CallRole.physician), FakeConnection())
    assert call.closed  # nobody was seated: the room (and its place under TELEMED_MEDIA_MAX_CALLS) is gone
    assert closed == [call]

    call = room(engine, store)
    engine.call.failing = False
    doctor = FakeConnection()
    physician = await call.attach(seat(CallRole.physician), doctor)
    engine.call.failing = True
    with pytest.raises(MediaUnavailable):
        await call.attach(seat(CallRole.patient), FakeConnection())
    assert call.participants() == [physician]  # the patient is not shown as connected
    assert "participant_joined" not in doctor.types()
    with pytest.raises(MediaUnavailable):
        await call.attach(seat(CallRole.physician), FakeConnection())  # the physician's new tab fails
    assert physician.state == "reconnecting"  # as if dropped: may come back within the grace
    assert not call.connected()
    assert not call.closed
