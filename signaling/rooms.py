"""A consultation's live call: who is connected since when, muted or not, and what happens when they come and go.

The room speaks to participants through `Connection`s (the WebSocket handler's, or a test's), to the media
through a `MediaCall` (in this process or, later, a media worker) and to the database through a `CallStore`.
It never imports aiohttp. All changes of who is in the room happen under one lock, one at a time, in tasks of
the room's own: a caller cancelled half-way (a handler whose client went away) cannot leave a change half-done.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import structlog

from media.calls import MediaCall, MediaEngine, UnknownPeer
from media.recording.capture import RecordingSpec
from media.recording.storage import StorageLocation
from server.audit.services import AuditContext
from server.db.base import utcnow
from signaling import messages
from signaling.calls import CLOSE_GOING_AWAY, CLOSE_MEDIA_FAILED, CLOSE_NORMAL, CLOSE_NOT_OPEN, CLOSE_REPLACED, Seat
from signaling.models import CallRole

log = structlog.get_logger("telemed.signaling")
T = TypeVar("T")


class Connection(Protocol):
    """One participant's socket, as the room sees it. Neither call blocks: events are queued in order."""

    def send(self, event: dict[str, Any]) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...


class CallStore(Protocol):
    """What the room keeps in the database."""

    async def resume(self, consultation_id: uuid.UUID) -> None: ...

    async def interrupt(self, consultation_id: uuid.UUID) -> None: ...

    async def end(self, seat: Seat, ctx: AuditContext) -> None: ...

    async def save_chat(self, seat: Seat, text: str) -> tuple[uuid.UUID, dt.datetime]: ...

    async def start_recording(self, consultation_id: uuid.UUID, patient_id: uuid.UUID
                              ) -> tuple[RecordingSpec, StorageLocation]: ...

    async def recording_stopped(self, recording_id: str, reason: str) -> None: ...


class RecordingNotAllowed(Exception):
    """The consent gate, asked as the recording was to start, does not allow it (withdrawn meanwhile)."""


class RoomClosed(Exception):
    """The room ended or emptied meanwhile; a newcomer gets a fresh room."""


class RoleTaken(Exception):
    """Someone else holds this role in the call (a second invited guest while the first is in it)."""


class CannotEnd(Exception):
    """The consultation cannot be ended now; the message says why (safe to show)."""


@dataclass(eq=False)
class Participant:
    seat: Seat
    participant_id: str
    since: dt.datetime
    connection: Connection | None = None
    peer_id: str | None = None
    state: Literal["connected", "reconnecting"] = "connected"
    muted: bool = False
    camera: bool = True
    expiry: asyncio.Task[None] | None = field(default=None, repr=False)

    def out(self) -> messages.ParticipantOut:
        return messages.ParticipantOut(participant_id=self.participant_id, role=self.seat.role.value,
                                       name=self.seat.name, state=self.state, since=self.since, muted=self.muted,
                                       camera=self.camera)


class Room:
    """One consultation's call: the physician, the patient and at most one invited guest, each with one connection
    and one server peer (which slot of the others' a participant fills follows from the role: media.peer)."""

    def __init__(self, consultation_id: uuid.UUID, *, patient_id: uuid.UUID, engine: MediaEngine, store: CallStore,
                 grace: float, on_closed: Callable[[Room], None],
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.consultation_id = consultation_id
        self.patient_id = patient_id
        self.recording = False  # the consent gate allows recording this call
        self.recording_paused = False  # the physician paused it
        self._recording_id: str | None = None  # the recording being written now
        self._both_joined = False  # physician and patient have been in the call together: it is `in_call`
        self._store = store
        self._grace = grace
        self._on_closed = on_closed
        self._clock = clock
        self._lock = asyncio.Lock()
        self._participants: dict[uuid.UUID, Participant] = {}  # by user id
        self._ids: dict[uuid.UUID, str] = {}  # a user keeps one participant id in this room
        self._grace_task: asyncio.Task[None] | None = None
        self._changes: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.media: MediaCall = engine.open_call(consultation_id, self._peer_state)

    @property
    def closed(self) -> bool:
        return self._closed

    def participants(self) -> list[Participant]:
        return list(self._participants.values())

    def connected(self) -> list[Participant]:
        return [p for p in self._participants.values() if p.state == "connected"]

    async def attach(self, seat: Seat, connection: Connection) -> Participant:
        """Seat a participant (a newer connection of the same person replaces the older one) with a new peer."""
        return await self._change(self._attach(seat, connection))

    async def detach(self, participant: Participant, connection: Connection, *, left: bool) -> None:
        """The connection closed: the participant left (`leave`) or dropped and may come back within the grace."""
        await self._change(self._detach(participant, connection, left=left))

    async def end(self, participant: Participant, ctx: AuditContext) -> None:
        """The physician ends the consultation: `completed`, everyone gets `ended`, sockets and peers close."""
        if participant.seat.role is not CallRole.physician:
            raise CannotEnd("only the physician ends the consultation")
        await self._change(self._end(participant, ctx))

    async def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Shut down: a call still in progress is `interrupted` (participants may resume it on return)."""
        await self._change(self._shut(code, reason))

    async def _change(self, change: Coroutine[Any, Any, T]) -> T:
        """Run a change of the room in a task of its own, to its end even if the caller is cancelled."""
        task = asyncio.create_task(change, name="call-room-change")
        self._changes.add(task)
        task.add_done_callback(self._changed)
        return await asyncio.shield(task)

    def _changed(self, task: asyncio.Task[Any]) -> None:
        self._changes.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here too, in case the caller was cancelled and never sees it
        if error is not None and not isinstance(error, RoomClosed | RoleTaken | CannotEnd):
            log.warning("call_room_change_failed", error=type(error).__name__)

    async def _attach(self, seat: Seat, connection: Connection) -> Participant:
        async with self._lock:
            if self._closed:
                raise RoomClosed()
            existing = self._participants.get(seat.user_id)
            if existing is None and any(p.seat.role is seat.role for p in self._participants.values()):
                raise RoleTaken()
            if existing is not None:
                await self._unplug(existing, close_code=CLOSE_REPLACED, reason="connected elsewhere")
                _cancel(existing.expiry)
            participant = existing or Participant(seat, self._ids.setdefault(seat.user_id, secrets.token_hex(8)),
                                                  since=self._clock())
            participant.seat, participant.connection, participant.state = seat, connection, "connected"
            participant.peer_id = secrets.token_hex(8)
            try:
                await self.media.add_peer(participant.peer_id, seat.role.value)
            except Exception:
                await self._not_seated(participant, replaced=existing is not None)
                raise
            self._participants[seat.user_id] = participant
            _cancel(self._grace_task)
            self._grace_task = None
            recording_changed = self.recording != seat.may_record
            self.recording = seat.may_record  # the consent gate was checked for this very join
            others = [p for p in self._participants.values() if p is not participant]
            connection.send(messages.event("joined", participant_id=participant.participant_id,
                                           role=seat.role.value, recording=self.recording and not self.recording_paused,
                                           recording_paused=self.recording_paused,
                                           participants=[p.out() for p in others]))
            self._broadcast(messages.event("participant_joined", participant=participant.out()), but=participant)
            if recording_changed and others:
                self._broadcast(messages.event("recording", active=self.recording and not self.recording_paused,
                                               paused=self.recording_paused), but=participant)
            if {p.seat.role for p in self.connected()} >= {CallRole.physician, CallRole.patient}:
                try:
                    await self._store.resume(self.consultation_id)
                except Exception:  # the call goes on; the status catches up at the next join
                    log.exception("call_resume_failed")
                self._both_joined = True
            await self._sync_recording("consent_withdrawn")
            return participant

    async def _detach(self, participant: Participant, connection: Connection, *, left: bool) -> None:
        async with self._lock:
            if self._closed or participant.connection is not connection:
                return  # replaced by a newer connection, or the room is over
            await self._unplug(participant)
            if left:
                del self._participants[participant.seat.user_id]
                self._broadcast(messages.event("participant_left", participant_id=participant.participant_id,
                                               reason="left"))
            else:
                participant.state = "reconnecting"
                participant.expiry = asyncio.create_task(self._expire(participant), name="call-reconnect-grace")
                self._broadcast(messages.event("participant_reconnecting",
                                               participant_id=participant.participant_id))
            if not self.connected():
                self._grace_task = asyncio.create_task(self._expire_room(), name="call-room-grace")

    async def answer(self, participant: Participant, connection: Connection, offer_sdp: str) -> str:
        """The server peer's answer to this connection's offer (media errors propagate)."""
        return await self.media.answer(self._peer_of(participant, connection), offer_sdp)

    async def add_candidate(self, participant: Participant, connection: Connection, candidate: str,
                            sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        await self.media.add_candidate(self._peer_of(participant, connection), candidate, sdp_mid, sdp_mline_index)

    def media_state(self, participant: Participant, *, muted: bool, camera: bool) -> None:
        """A participant muted or unmuted, or turned the camera off or on: the others see it."""
        participant.muted, participant.camera = muted, camera
        self._broadcast(messages.event("media_state", participant_id=participant.participant_id, muted=muted,
                                       camera=camera), but=participant)

    async def chat(self, participant: Participant, text: str) -> None:
        """Keep the (cleaned) message and show it to everyone, the sender included (with its id and time)."""
        message_id, sent_at = await self._store.save_chat(participant.seat, text)
        self._broadcast(messages.event("chat", id=message_id, participant_id=participant.participant_id,
                                       role=participant.seat.role.value, name=participant.seat.name, text=text,
                                       sent_at=sent_at))

    async def _end(self, participant: Participant, ctx: AuditContext) -> None:
        async with self._lock:
            if self._closed:
                return
            await self._store.end(participant.seat, ctx)
            self._broadcast(messages.event("ended", reason="ended_by_physician",
                                           by=participant.participant_id))
            await self._close(CLOSE_NORMAL, "consultation ended")

    async def finished(self) -> None:
        """The consultation was completed outside the call (the physician's Finish button on the consultation
        page or the API): everyone gets `ended`, sockets and peers close."""
        await self._change(self._finished())

    async def _finished(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._broadcast(messages.event("ended", reason="completed"))
            await self._close(CLOSE_NORMAL, "consultation ended")

    async def remove_guest(self, invitation_id: uuid.UUID) -> bool:
        """The physician revoked the guest's invitation: they are told, their socket and peer close, the others see
        them leave. True if they were in the room."""
        return await self._change(self._remove_guest(invitation_id))

    async def _remove_guest(self, invitation_id: uuid.UUID) -> bool:
        async with self._lock:
            guest = next((p for p in self._participants.values() if p.seat.invitation_id == invitation_id), None)
            if self._closed or guest is None:
                return False
            if guest.connection is not None:
                guest.connection.send(messages.error("invitation_gone", "the physician withdrew the invitation"))
            await self._unplug(guest, close_code=CLOSE_NOT_OPEN, reason="invitation revoked")
            _cancel(guest.expiry)
            del self._participants[guest.seat.user_id]
            self._broadcast(messages.event("participant_left", participant_id=guest.participant_id,
                                           reason="removed"))
            if not self.connected():
                self._grace_task = asyncio.create_task(self._expire_room(), name="call-room-grace")
            return True

    async def set_recording(self, active: bool) -> None:
        """The consent gate changed mid-call (a withdrawal): the recording stops at once and everyone is told."""
        await self._change(self._set_recording(active=active, reason="consent_withdrawn"))

    async def pause_recording(self, participant: Participant, paused: bool) -> None:
        """The physician pauses (or resumes) the recording: a pause ends the current recording; resuming starts a
        new one. Everyone sees the state."""
        if participant.seat.role is not CallRole.physician:
            raise CannotEnd("only the physician pauses the recording")
        await self._change(self._set_recording(paused=paused, reason="paused"))

    async def _set_recording(self, *, active: bool | None = None, paused: bool | None = None, reason: str) -> None:
        """Change the consent flag or the pause (None: as it is when the lock is ours, not when the change was
        asked for: a pause queued behind a withdrawal must not bring the withdrawn consent back)."""
        async with self._lock:
            active = self.recording if active is None else active
            paused = self.recording_paused if paused is None else paused
            if self._closed or (self.recording, self.recording_paused) == (active, paused):
                return
            self.recording, self.recording_paused = active, paused
            await self._sync_recording(reason)
            self._broadcast(messages.event("recording", active=active and not paused, paused=paused))

    async def _sync_recording(self, reason: str) -> None:
        """Start or stop the recorder as the consent, the pause and the call's progress now want (in the lock).

        A failure to record is logged and the call goes on: the consultation matters more than its recording, and
        the record shows the recording missing."""
        wanted = self.recording and not self.recording_paused and self._both_joined and not self._closed
        if wanted and self._recording_id is None:
            try:
                spec, location = await self._store.start_recording(self.consultation_id, self.patient_id)
            except RecordingNotAllowed:  # withdrawn after this join's ticket was checked: not recorded, and said so
                self.recording = False
                self._broadcast(messages.event("recording", active=False, paused=self.recording_paused))
                return
            except Exception:
                log.exception("recording_start_failed")
                return
            try:
                await self.media.start_recording(spec, location)
            except Exception:  # the row is stopped at once: finalised, it says nothing was recorded
                log.exception("recording_start_failed")
                try:
                    await self._store.recording_stopped(spec.recording_id, "media_failed")
                except Exception:  # left `recording`: recovery finalises it at this node's next start
                    log.exception("recording_stopped_not_saved")
                return
            self._recording_id = spec.recording_id
        elif not wanted and self._recording_id is not None:
            await self._stop_recording(reason)

    async def _stop_recording(self, reason: str) -> None:
        recording_id, self._recording_id = self._recording_id, None
        if recording_id is None:
            return
        try:
            await self.media.stop_recording(reason)
        except Exception:  # the segments written so far are on disk; the finaliser marks what is missing
            log.exception("recording_stop_failed")
        try:
            await self._store.recording_stopped(recording_id, reason)
        except Exception:  # left `recording`: recovery finalises it at this node's next start
            log.exception("recording_stopped_not_saved")

    async def _shut(self, code: int, reason: str) -> None:
        async with self._lock:
            if self._closed:
                return
            if self.connected():
                try:
                    await self._store.interrupt(self.consultation_id)
                except Exception:
                    log.exception("call_interrupt_failed")
            await self._close(code, reason)

    # --- inside the lock

    async def _not_seated(self, participant: Participant, *, replaced: bool) -> None:
        """The media could not take the participant (a media worker failed): as if they had dropped, so that a
        room nobody is left in waits out its grace, and an empty one closes (its place is free again)."""
        participant.connection, participant.peer_id = None, None
        if replaced:
            participant.state = "reconnecting"
            participant.expiry = asyncio.create_task(self._expire(participant), name="call-reconnect-grace")
            self._broadcast(messages.event("participant_reconnecting", participant_id=participant.participant_id))
        if not self._participants:
            await self._close(CLOSE_GOING_AWAY, "media unavailable")
        elif not self.connected() and self._grace_task is None:
            self._grace_task = asyncio.create_task(self._expire_room(), name="call-room-grace")

    async def _unplug(self, participant: Participant, *, close_code: int | None = None, reason: str = "") -> None:
        """Take the participant's connection and peer away (closing the connection with `close_code` if given)."""
        connection, peer_id = participant.connection, participant.peer_id
        participant.connection, participant.peer_id = None, None
        if connection is not None and close_code is not None:
            connection.close(close_code, reason)
        if peer_id is not None:
            await self.media.remove_peer(peer_id)

    async def _close(self, code: int, reason: str) -> None:
        self._closed = True
        await self._stop_recording("ended" if code == CLOSE_NORMAL else "interrupted")
        current = asyncio.current_task()
        for task in [self._grace_task, *(p.expiry for p in self._participants.values())]:
            if task is not current:
                _cancel(task)
        for participant in self._participants.values():
            if participant.connection is not None:
                participant.connection.close(code, reason)
            participant.connection, participant.peer_id = None, None
        self._participants.clear()
        await self.media.close()
        self._on_closed(self)

    async def _expire(self, participant: Participant) -> None:
        await asyncio.sleep(self._grace)
        async with self._lock:
            if self._closed or participant.state != "reconnecting" or \
                    self._participants.get(participant.seat.user_id) is not participant:
                return
            participant.expiry = None
            del self._participants[participant.seat.user_id]
            self._broadcast(messages.event("participant_left", participant_id=participant.participant_id,
                                           reason="timeout"))

    async def _expire_room(self) -> None:
        await asyncio.sleep(self._grace)
        async with self._lock:
            if self._closed or self.connected():
                return
            try:
                await self._store.interrupt(self.consultation_id)
            except Exception:
                log.exception("call_interrupt_failed")
            await self._close(CLOSE_GOING_AWAY, "nobody returned")

    # --- helpers

    def _peer_of(self, participant: Participant, connection: Connection) -> str:
        if participant.connection is not connection or participant.peer_id is None:
            raise UnknownPeer("this connection has no peer any more")
        return participant.peer_id

    def _broadcast(self, event: dict[str, Any], *, but: Participant | None = None) -> None:
        for participant in self._participants.values():
            if participant is not but and participant.connection is not None:
                participant.connection.send(event)

    def _peer_state(self, peer_id: str, state: str) -> None:
        if state != "failed":
            return
        for participant in self._participants.values():
            if participant.peer_id == peer_id and participant.connection is not None:
                log.info("call_media_failed", role=participant.seat.role.value)
                participant.connection.send(messages.error("media_failed", "the media connection failed: rejoin"))
                participant.connection.close(CLOSE_MEDIA_FAILED, "media failed")


def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
