"""The call's WebSocket, `GET /api/v1/signaling` (protocol: docs/signaling.md), and the calls' lifetime in the app.

Order of a connection: the `Origin` must be an allowed one (else 403, before any upgrade); the first message
must be `join` with a ticket, within seconds; then offers, candidates, media states, chat, leave or end, each
validated, rate limited and answered. Events to the browser go through one writer task per connection, so
a room can tell everyone something without waiting for anyone's network.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from aiortc import RTCIceServer
from sqlalchemy.exc import SQLAlchemyError

from media import loopback
from media.calls import LocalMediaEngine, NegotiationFailed, UnknownPeer
from media.recording import services as recording_services
from media.recording.queue import FinalisationQueue, Recordings
from media.workers import WorkerMediaEngine
from server import keys
from server.audit.services import AuditContext
from server.celery_app import create_celery
from server.db.base import utcnow
from server.db.engine import transaction
from server.http.principal import audit_context, client_ip
from server.http.problems import ProblemError
from server.settings import Environment, Settings
from signaling import calls, messages, origins, services
from signaling.calls import CLOSE_NORMAL, CLOSE_POLICY, Refused
from signaling.messages import BadMessage
from signaling.ratelimit import TokenBucket
from signaling.registry import CallRegistry, DatabaseCallStore
from signaling.rooms import CannotEnd, Participant, Room
from signaling.sockets import SocketsPerAddress

log = structlog.get_logger("telemed.signaling")

PATH = "/api/v1/signaling"
#: Events a connection may have waiting to be written before it counts as not reading and is closed.
MAX_PENDING_EVENTS = 256
#: Chat has its own, slower bucket: each message is a database row.
CHAT_PER_SECOND, CHAT_BURST = 1.0, 5
#: How long closing waits for the browser's half of the closing handshake.
CLOSE_TIMEOUT = 5.0
CLOSE_INTERNAL_ERROR = 1011


class OriginNotAllowed(ProblemError):
    status, code, title = 403, "origin_not_allowed", "This page may not open the call"


class SocketConnection:
    """A room's Connection over an aiohttp WebSocket: queued events written in order by one task, then the close."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._close_with: tuple[int, str] | None = None
        self._task = asyncio.create_task(self._write(), name="signaling-writer")

    def send(self, event: dict[str, Any]) -> None:
        if self._close_with is not None:
            return
        if len(self._pending) >= MAX_PENDING_EVENTS:
            self.close(CLOSE_POLICY, "not reading")
            return
        self._pending.append(event)
        self._wake.set()

    def close(self, code: int, reason: str = "") -> None:
        if self._close_with is None:
            self._close_with = (code, reason)
            self._wake.set()

    async def finish(self, code: int = CLOSE_NORMAL) -> None:
        """Close (if nobody did yet) and wait until the writer has sent what was queued and closed the socket."""
        self.close(code)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=CLOSE_TIMEOUT + 1)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    await self.ws.send_json(self._pending.popleft())
                if self._close_with is not None:
                    code, reason = self._close_with
                    await self.ws.close(code=code, message=reason.encode()[:120])
                    return
        except (ConnectionError, RuntimeError):  # the browser went away first: nothing left to tell it
            pass


@dataclass
class _Call:
    """One joined connection's state in the handler."""

    ws: web.WebSocketResponse
    connection: SocketConnection
    room: Room
    participant: Participant
    ctx: AuditContext
    bucket: TokenBucket
    chat_bucket: TokenBucket


async def websocket(request: web.Request) -> web.StreamResponse:
    """The call's signaling socket: join with a ticket, then negotiate media and talk (docs/signaling.md)."""
    settings = request.app[keys.settings]
    allowed = origins.allowed_origins(settings.allowed_origins, settings.public_url)
    if not origins.origin_allowed(request.headers.get("Origin"), allowed):
        raise OriginNotAllowed("Open the call from the clinic's own pages")
    with request.app[keys.signaling_sockets].hold(client_ip(request)):  # 429 beyond the limit, before upgrading
        ws = web.WebSocketResponse(heartbeat=settings.signaling_heartbeat_seconds,
                                   max_msg_size=messages.MAX_MESSAGE_BYTES, compress=False, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        connection = SocketConnection(ws)
        try:
            await _run(request, ws, connection)
        except Exception:
            # The response has begun: no problem document can follow, only the WebSocket's own "internal error".
            log.exception("signaling_failed")
            connection.close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            await connection.finish()
        return ws


async def _run(request: web.Request, ws: web.WebSocketResponse, connection: SocketConnection) -> None:
    app, settings = request.app, request.app[keys.settings]
    join = await _first_message(ws, connection, settings.signaling_join_timeout_seconds)
    if join is None:
        connection.close(CLOSE_POLICY, "join first")
        return
    ctx = audit_context(request)
    try:
        async with transaction(app[keys.sessions]) as session:
            seat = await calls.take_seat(session, token=join.ticket, consultation_id=join.consultation_id, ctx=ctx,
                                         now=utcnow(), window=services.JoinWindow.from_settings(settings),
                                         consent_policy=app[keys.consent].policy)
    except Refused as refused:
        connection.send(messages.error(refused.code, refused.message))
        connection.close(refused.close_code, refused.code)
        return
    try:
        room, participant = await app[keys.calls].attach(seat, connection)
    except Refused as refused:
        async with transaction(app[keys.sessions]) as session:
            await calls.record_refused(session, seat=seat, code=refused.code, ctx=ctx, now=utcnow())
        connection.send(messages.error(refused.code, refused.message))
        connection.close(refused.close_code, refused.code)
        return
    now = asyncio.get_running_loop().time()
    call = _Call(ws, connection, room, participant, ctx.acting_as(seat.user_id, seat.role.value),
                 TokenBucket(rate=settings.signaling_messages_per_second, burst=settings.signaling_message_burst,
                             now=now),
                 TokenBucket(rate=CHAT_PER_SECOND, burst=CHAT_BURST, now=now))
    left = False
    try:
        left = await _serve(call, max_bad=settings.signaling_max_bad_messages)
    finally:
        await room.detach(participant, connection, left=left)


async def _first_message(ws: web.WebSocketResponse, connection: SocketConnection,
                         wait: float) -> messages.Join | None:
    try:
        message = await ws.receive(timeout=wait)
    except TimeoutError:
        connection.send(messages.error("join_timeout", "send `join` with your ticket first"))
        return None
    if message.type is not WSMsgType.TEXT:
        return None
    try:
        parsed = messages.parse(message.data)
    except BadMessage as bad:
        connection.send(messages.error(bad.code, bad.message))
        return None
    if not isinstance(parsed, messages.Join):
        connection.send(messages.error("join_first", "send `join` with your ticket first"))
        return None
    return parsed


async def _serve(call: _Call, *, max_bad: int) -> bool:
    """Read and act on messages until the socket closes; True if the participant left on purpose."""
    loop = asyncio.get_running_loop()
    bad = 0
    while True:
        message = await call.ws.receive()
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return False
        try:
            if not call.bucket.take(loop.time()):
                raise BadMessage("rate_limited", "too many messages: slow down")
            if message.type is not WSMsgType.TEXT:
                raise BadMessage("invalid_message", "send JSON text messages")
            if await _dispatch(call, messages.parse(message.data), loop.time()):
                return True
        except BadMessage as problem:
            bad += 1
            call.connection.send(messages.error(problem.code, problem.message))
            if bad >= max_bad:
                log.info("signaling_abuse_closed", role=call.participant.seat.role.value)
                call.connection.close(CLOSE_POLICY, "too many bad messages")
                return False


async def _dispatch(call: _Call, message: Any, now: float) -> bool:
    """Act on one valid message; True when the participant leaves."""
    room, participant, connection = call.room, call.participant, call.connection
    try:
        match message:
            case messages.Offer(sdp=sdp):
                answer = await room.answer(participant, connection, sdp)
                connection.send(messages.event("answer", sdp=answer))
            case messages.Ice(candidate=candidate):
                await room.add_candidate(participant, connection, candidate.candidate if candidate else "",
                                         candidate.sdpMid if candidate else None,
                                         candidate.sdpMLineIndex if candidate else None)
            case messages.MediaState(muted=muted, camera=camera):
                room.media_state(participant, muted=muted, camera=camera)
            case messages.Chat(text=text):
                if not call.chat_bucket.take(now):
                    raise BadMessage("rate_limited", "too many chat messages: slow down")
                cleaned = calls.clean_chat(text)
                if not cleaned:
                    raise BadMessage("invalid_message", "the chat message is empty once markup is removed")
                await room.chat(participant, cleaned)
            case messages.Leave():
                return True
            case messages.End():
                await room.end(participant, call.ctx)
            case messages.PauseRecording(paused=paused):
                await room.pause_recording(participant, paused)
            case messages.Join():
                raise BadMessage("already_joined", "this connection has joined already")
            case messages.Answer():
                raise BadMessage("unexpected_answer", "the server answers offers; it makes none")
    except NegotiationFailed as exc:
        raise BadMessage("negotiation_failed", str(exc)) from None
    except CannotEnd as exc:
        code = "cannot_pause" if isinstance(message, messages.PauseRecording) else "cannot_end"
        raise BadMessage(code, str(exc)) from None
    except UnknownPeer:
        pass  # replaced by a newer connection of the same participant: this one is closing
    return False


def server_ice_servers(settings: Settings, peer_id: str) -> list[RTCIceServer]:
    """The server peers' ICE servers: the clinic's own (TURN with credentials of their own), never a public one."""
    return [RTCIceServer(urls=list(server.urls), username=server.username, credential=server.credential)
            for server in services.ice_servers_for(settings, f"server-{peer_id}")]


async def calls_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the media engine and the call registry, listening for consent withdrawals; all closed at the
    end (after `close_calls` has closed the sockets at shutdown).

    TELEMED_MEDIA_WORKERS=0 runs the peers in this process; otherwise that many media worker processes (one per
    core when unset) host them, started together here (docs/media-workers.md). Under TELEMED_ENV=test the
    workers pin their ICE to 127.0.0.1 (media.loopback), as the tests' own aiortc clients are.
    """
    settings = app[keys.settings]

    def ice_servers(peer_id: str) -> list[RTCIceServer]:
        return server_ice_servers(settings, peer_id)

    workers = settings.media_workers if settings.media_workers is not None else (os.cpu_count() or 1)
    engine: LocalMediaEngine | WorkerMediaEngine
    pinned_here = False
    if workers == 0:
        if settings.env is Environment.test and not loopback.is_pinned():  # as the workers' --loopback-only
            loopback.pin()
            pinned_here = True
        engine = LocalMediaEngine(ice_servers=ice_servers)
        engine.start()
    else:
        engine = WorkerMediaEngine(
            workers=workers, ice_servers=ice_servers,
            loopback_only=settings.env is Environment.test,
            log_format=settings.resolved_log_format,
            log_level=settings.log_level)
        await engine.start()
    recordings = Recordings(settings, app[keys.key_material], FinalisationQueue(create_celery(settings)),
                            app[keys.consent].policy)
    await _recover_recordings(app, recordings)
    registry = CallRegistry(engine=engine, store=DatabaseCallStore(app[keys.sessions], recordings=recordings),
                            grace=settings.call_grace_seconds, max_calls=settings.media_max_calls)
    app[keys.calls] = registry
    app[keys.signaling_sockets] = SocketsPerAddress(settings.signaling_sockets_per_address)
    withdrawals = app[keys.consent_withdrawals]
    withdrawals.subscribe(registry.on_withdrawal)
    try:
        yield
    finally:
        if registry.on_withdrawal in withdrawals.listeners:
            withdrawals.listeners.remove(registry.on_withdrawal)
        await registry.close()
        await engine.close()
        await recordings.queue.drain()
        if pinned_here:
            loopback.unpin()


async def _recover_recordings(app: web.Application, recordings: Recordings) -> None:
    """What this node left open when it last stopped (killed mid-call) is queued for finalisation as `partial`.
    A database not migrated yet has nothing to recover: the server still starts (and `/readyz` says why)."""
    try:
        async with transaction(app[keys.sessions]) as session:
            left_open = await recording_services.recover(session, settings=app[keys.settings], now=utcnow())
    except SQLAlchemyError as exc:
        log.warning("recording_recovery_skipped", error=type(exc).__name__)
        return
    for recording_id in left_open:
        recordings.queue.put(str(recording_id))


async def close_calls(app: web.Application) -> None:
    """on_shutdown: close the calls' sockets (1001) and peers before the server waits for its handlers."""
    if keys.calls in app:
        await app[keys.calls].close()
