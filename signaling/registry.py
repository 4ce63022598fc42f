"""The live calls of this node: one room per consultation, created on the first join, gone when the call is."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent import services as consent_services
from consent.models import ConsentPurpose
from consent.services import Withdrawal
from media.calls import MediaEngine
from media.recording import services as recording_services
from media.recording.capture import RecordingSpec
from media.recording.queue import Recordings
from media.recording.storage import StorageLocation
from media.workers import MediaUnavailable
from server.audit.services import AuditContext
from server.db.base import utcnow
from server.db.engine import transaction
from server.http.problems import ProblemError
from signaling import calls
from signaling.calls import CLOSE_GOING_AWAY, CLOSE_MEDIA_FAILED, CLOSE_NOT_OPEN, CLOSE_TRY_AGAIN_LATER, Refused, Seat
from signaling.rooms import (
    CallStore,
    CannotEnd,
    Connection,
    Participant,
    RecordingNotAllowed,
    RoleTaken,
    Room,
    RoomClosed,
)

log = structlog.get_logger("telemed.signaling")


class DatabaseCallStore:
    """The room's CallStore: each change in its own short transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], dt.datetime] = utcnow, *,
                 recordings: Recordings | None = None) -> None:
        self._sessions = sessions
        self._clock = clock
        self._recordings = recordings

    async def start_recording(self, consultation_id: uuid.UUID, patient_id: uuid.UUID
                              ) -> tuple[RecordingSpec, StorageLocation]:
        if self._recordings is None:
            raise RuntimeError("this node does not record")
        async with transaction(self._sessions) as session:
            # The gate is asked again here, in the transaction that creates the recording: a withdrawal that
            # raced the call's flags (or came through another node) still wins.
            gate = await consent_services.patient_gate(session, patient_id=patient_id,
                                                       policy=self._recordings.consent_policy, now=self._clock())
            if not gate.may_record:
                raise RecordingNotAllowed()
            spec = await recording_services.start(session, consultation_id=consultation_id,
                                                  keys=self._recordings.keys, settings=self._recordings.settings,
                                                  now=self._clock())
        return spec, recording_services.storage_location(self._recordings.settings)

    async def recording_stopped(self, recording_id: str, reason: str) -> None:
        async with transaction(self._sessions) as session:
            await recording_services.stopped(session, recording_id=uuid.UUID(recording_id), reason=reason,
                                             now=self._clock())
        if self._recordings is not None:
            self._recordings.queue.put(recording_id)

    async def resume(self, consultation_id: uuid.UUID) -> None:
        async with transaction(self._sessions) as session:
            await calls.resume(session, consultation_id=consultation_id, now=self._clock())

    async def interrupt(self, consultation_id: uuid.UUID) -> None:
        async with transaction(self._sessions) as session:
            await calls.interrupt(session, consultation_id=consultation_id, now=self._clock())

    async def end(self, seat: Seat, ctx: AuditContext) -> None:
        try:
            async with transaction(self._sessions) as session:
                await calls.end(session, seat=seat, ctx=ctx, now=self._clock())
        except ProblemError as exc:  # e.g. the physician alone in a call the patient was never admitted to
            raise CannotEnd(exc.detail or exc.title) from None

    async def save_chat(self, seat: Seat, text: str) -> tuple[uuid.UUID, dt.datetime]:
        async with transaction(self._sessions) as session:
            message = await calls.save_chat(session, seat=seat, text=text, now=self._clock())
        return message.id, message.sent_at


class CallRegistry:
    """Rooms by consultation, at most `max_calls` of them (admission control); closes them all at shutdown.

    The limit is on calls, not participants: a call in progress always takes its participants back (a rejoin,
    a reconnection), so reaching the limit only ever turns away a call that has not started.
    """

    def __init__(self, *, engine: MediaEngine, store: CallStore, grace: float, max_calls: int) -> None:
        self.engine = engine
        self.max_calls = max_calls
        self._store = store
        self._grace = grace
        self._rooms: dict[uuid.UUID, Room] = {}
        self._closing = False

    def room(self, consultation_id: uuid.UUID) -> Room | None:
        """The live room of a consultation, if there is one."""
        return self._rooms.get(consultation_id)

    @property
    def rooms(self) -> tuple[Room, ...]:
        return tuple(self._rooms.values())

    def has_room_for(self, consultation_id: uuid.UUID) -> bool:
        """Whether this consultation's call may be joined here: it is live already, or a place is free."""
        return consultation_id in self._rooms or len(self._rooms) < self.max_calls

    async def attach(self, seat: Seat, connection: Connection) -> tuple[Room, Participant]:
        """Seat the participant in the consultation's room, opening the room if there is none (and a place is
        free: the join request checked, but other calls may have started since)."""
        while True:
            if self._closing:
                raise Refused("shutting_down", "the server is shutting down: rejoin shortly", CLOSE_GOING_AWAY)
            room = self._rooms.get(seat.consultation_id)
            if room is None:
                if not self.has_room_for(seat.consultation_id):
                    raise Refused("media_capacity", "every place for a call is taken: try again shortly",
                                  CLOSE_TRY_AGAIN_LATER)
                room = Room(seat.consultation_id, patient_id=seat.patient_id, engine=self.engine,
                            store=self._store, grace=self._grace, on_closed=self._forget)
                self._rooms[seat.consultation_id] = room
            try:
                return room, await room.attach(seat, connection)
            except RoomClosed:
                continue  # it ended or emptied while we waited for it: the next turn opens a fresh one
            except RoleTaken:
                raise Refused("call_full", f"another {seat.role.value} is in the call", CLOSE_NOT_OPEN) from None
            except MediaUnavailable:
                raise Refused("media_failed", "the media service is unavailable: rejoin shortly",
                              CLOSE_MEDIA_FAILED) from None

    async def finished(self, consultation_id: uuid.UUID) -> None:
        """The consultation was completed by `finish`: its live room, if any, ends for everyone."""
        room = self._rooms.get(consultation_id)
        if room is not None:
            await room.finished()

    async def revoked(self, consultation_id: uuid.UUID, invitation_id: uuid.UUID) -> None:
        """An invitation was revoked: its guest, if in the consultation's live call, is removed from it."""
        room = self._rooms.get(consultation_id)
        if room is not None:
            await room.remove_guest(invitation_id)

    async def on_withdrawal(self, event: Withdrawal) -> None:
        """A patient withdrew consent to recording: their live call stops recording (`recording` off)."""
        if event.purpose is not ConsentPurpose.recording:
            return
        for room in list(self._rooms.values()):
            if room.patient_id == event.patient_id:
                await room.set_recording(False)

    async def close(self) -> None:
        """Close every room (sockets with 1001, peers), refuse newcomers. Idempotent."""
        self._closing = True
        for room in list(self._rooms.values()):
            try:
                await room.close()
            except Exception:
                log.exception("room_close_failed")
        self._rooms.clear()

    def _forget(self, room: Room) -> None:
        if self._rooms.get(room.consultation_id) is room:
            del self._rooms[room.consultation_id]

