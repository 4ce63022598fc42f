"""A media worker process: hosts whole calls' server peers for the web process that drives it over the channel.

One asyncio loop saturates one core, so the web process spawns one of these per core (TELEMED_MEDIA_WORKERS)
as a fresh interpreter, never a fork: aiortc's and asyncio's state must not be inherited. Run as

    python -m media.worker --fd N [--worker-id I] [--loopback-only] [--log-format F] [--log-level L]
    python -m media.worker --connect HOST:PORT    # a worker on another host (secret: TELEMED_MEDIA_WORKER_SECRET)

`--fd` is the worker's end of a Unix socket pair the web process made: no path, no port, nothing another
process could connect to. The worker answers requests (docs/media-workers.md) with `LocalMediaEngine` calls,
reports its peers' connection states as events, and exits, closing every peer, when the channel ends: the
web process closed it, or died (the kernel closes its end). SIGINT is ignored (Ctrl-C in a terminal reaches
the whole process group; the web process decides when its workers stop); SIGTERM closes cleanly too.

The server peers' ICE servers come with each `add_peer` from the web process, which mints the TURN
credentials: a worker never holds the TURN secret or the settings.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiortc import RTCIceServer
from pydantic import BaseModel, Field, ValidationError

from media import channel, loopback
from media.calls import LocalMediaCall, LocalMediaEngine, NegotiationFailed, UnknownPeer
from media.channel import BadMessage, Channel, ChannelError, FrameTooLarge
from media.recording.capture import RecordingSpec
from media.recording.storage import StorageLocation

log = structlog.get_logger("telemed.media.worker")

#: How long a new connection may take to say hello.
HELLO_TIMEOUT = 10.0
SECRET_ENV = "TELEMED_MEDIA_WORKER_SECRET"  # noqa: S105  # the variable's name, not a secret
_ID = Field(min_length=1, max_length=64)


class _Params(BaseModel):
    """Unknown fields are ignored: a newer web process may send more (docs: versioning)."""


class _CallParams(_Params):
    call_id: str = _ID


class _OpenCall(_CallParams):
    consultation_id: str | None = Field(default=None, max_length=64)  # for the worker's logs only


class _PeerParams(_CallParams):
    peer_id: str = _ID


class _IceServer(_Params):
    urls: list[str] = Field(min_length=1, max_length=16)
    username: str | None = None
    credential: str | None = None


class _AddPeer(_PeerParams):
    ice_servers: list[_IceServer] = Field(default_factory=list, max_length=16)
    role: str = Field(default="", max_length=16)  # the participant's role: which slot of the others it fills


class _Answer(_PeerParams):
    sdp: str = Field(min_length=1, max_length=channel.MAX_FRAME_BYTES)


class _AddCandidate(_PeerParams):
    candidate: str = Field(max_length=4096)
    sdp_mid: str | None = Field(default=None, max_length=64)
    sdp_mline_index: int | None = Field(default=None, ge=0, le=64)


class _Storage(_Params):
    """media.recording.storage.StorageLocation's fields."""

    folder: str = Field(min_length=1, max_length=4096)
    bucket: str | None = Field(default=None, max_length=255)
    prefix: str = Field(default="", max_length=1024)
    endpoint_url: str | None = Field(default=None, max_length=2048)
    region: str | None = Field(default=None, max_length=64)
    access_key_id: str | None = Field(default=None, max_length=256)
    secret_access_key: str | None = Field(default=None, max_length=256)


class _StartRecording(_CallParams):
    recording_id: str = _ID
    data_key: str = Field(min_length=44, max_length=44)  # 32 bytes, base64
    segment_seconds: float = Field(default=10.0, ge=1.0, le=60.0)
    storage: _Storage


class _StopRecording(_CallParams):
    reason: str = Field(default="stopped", max_length=64)


class RequestFailed(Exception):
    """A request the worker answers with an error (code and safe message), the connection going on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class WorkerService:
    """The worker's calls: requests applied to LocalMediaEngine calls, peer states emitted as events."""

    def __init__(self, *, emit: Callable[[dict[str, Any]], None], worker_id: str = "0") -> None:
        self.worker_id = worker_id
        self.engine = LocalMediaEngine(ice_servers=self._ice_servers_for)
        self._emit = emit
        self._calls: dict[str, LocalMediaCall] = {}
        self._ice: dict[str, list[RTCIceServer]] = {}
        self._started = time.monotonic()
        self._methods: dict[str, tuple[type[_Params], Callable[[Any], Awaitable[dict[str, Any]]]]] = {
            "open_call": (_OpenCall, self.open_call),
            "add_peer": (_AddPeer, self.add_peer),
            "answer": (_Answer, self.answer),
            "add_candidate": (_AddCandidate, self.add_candidate),
            "remove_peer": (_PeerParams, self.remove_peer),
            "close_call": (_CallParams, self.close_call),
            "start_recording": (_StartRecording, self.start_recording),
            "stop_recording": (_StopRecording, self.stop_recording),
            "stats": (_Params, self.stats),
            "ping": (_Params, self.ping),
        }

    def start(self) -> None:
        self.engine.start()

    async def close(self) -> None:
        """Close every call's peers (and their sockets)."""
        self._calls.clear()
        await self.engine.close()

    async def handle(self, method: object, params: object) -> dict[str, Any]:
        """One request's result; RequestFailed for what the web process should hear as an error."""
        if not isinstance(method, str) or method not in self._methods:
            raise RequestFailed(channel.UNKNOWN_METHOD, f"no method {str(method)[:40]!r}")
        model, handler = self._methods[method]
        try:
            parsed = model.model_validate(params if params is not None else {})
        except ValidationError as exc:
            fields = ", ".join(".".join(str(part) for part in e["loc"]) or "params" for e in exc.errors())
            raise RequestFailed(channel.BAD_MESSAGE, f"{method}: invalid {fields}") from None
        return await handler(parsed)

    async def open_call(self, params: _OpenCall) -> dict[str, Any]:
        if params.call_id not in self._calls:
            call_id = params.call_id
            self._calls[call_id] = self.engine.open_call(
                _call_uuid(params.consultation_id),
                lambda peer_id, state: self._emit(channel.event(
                    "peer_state", {"call_id": call_id, "peer_id": peer_id, "state": state})))
            log.info("media_call_opened", consultation_id=params.consultation_id)
        return {}

    async def add_peer(self, params: _AddPeer) -> dict[str, Any]:
        call = self._call(params.call_id)
        self._ice[params.peer_id] = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                                     for s in params.ice_servers]
        try:
            await call.add_peer(params.peer_id, params.role)
        except UnknownPeer:
            raise RequestFailed(channel.UNKNOWN_CALL, "the call is closed") from None
        except ValueError:
            raise RequestFailed(channel.PEER_EXISTS, "the peer exists") from None
        finally:
            self._ice.pop(params.peer_id, None)
        return {}

    async def answer(self, params: _Answer) -> dict[str, Any]:
        call = self._call(params.call_id)
        try:
            return {"sdp": await call.answer(params.peer_id, params.sdp)}
        except UnknownPeer:
            raise RequestFailed(channel.UNKNOWN_PEER, "no such peer") from None
        except NegotiationFailed as exc:
            raise RequestFailed(channel.NEGOTIATION_FAILED, str(exc)) from None

    async def add_candidate(self, params: _AddCandidate) -> dict[str, Any]:
        call = self._call(params.call_id)
        try:
            await call.add_candidate(params.peer_id, params.candidate, params.sdp_mid, params.sdp_mline_index)
        except UnknownPeer:
            raise RequestFailed(channel.UNKNOWN_PEER, "no such peer") from None
        except NegotiationFailed as exc:
            raise RequestFailed(channel.NEGOTIATION_FAILED, str(exc)) from None
        return {}

    async def remove_peer(self, params: _PeerParams) -> dict[str, Any]:
        call = self._calls.get(params.call_id)
        if call is not None:
            await call.remove_peer(params.peer_id)
        return {}

    async def start_recording(self, params: _StartRecording) -> dict[str, Any]:
        try:
            data_key = base64.b64decode(params.data_key, validate=True)
        except ValueError:
            raise RequestFailed(channel.BAD_MESSAGE, "data_key is not base64") from None
        await self._call(params.call_id).start_recording(
            RecordingSpec(params.recording_id, data_key, params.segment_seconds),
            StorageLocation(**params.storage.model_dump()))
        return {}

    async def stop_recording(self, params: _StopRecording) -> dict[str, Any]:
        await self._call(params.call_id).stop_recording(params.reason)
        return {}

    async def close_call(self, params: _CallParams) -> dict[str, Any]:
        call = self._calls.pop(params.call_id, None)
        if call is not None:
            await call.close()
        return {}

    async def stats(self, params: _Params) -> dict[str, Any]:
        """What the web process and the tests look at: load, and what a leak would grow."""
        return {
            "worker_id": self.worker_id,
            "pid": os.getpid(),
            "calls": len(self._calls),
            "peers": sum(len(call.peers) for call in self._calls.values()),
            "cpu_seconds": time.process_time(),
            "uptime_seconds": time.monotonic() - self._started,
            "rss_kib": _rss_kib(),
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "fds": _open_fds(),
        }

    async def ping(self, params: _Params) -> dict[str, Any]:
        return {}

    def _call(self, call_id: str) -> LocalMediaCall:
        try:
            return self._calls[call_id]
        except KeyError:
            raise RequestFailed(channel.UNKNOWN_CALL, "no such call") from None

    def _ice_servers_for(self, peer_id: str) -> list[RTCIceServer]:
        return self._ice.get(peer_id, [])


def _call_uuid(consultation_id: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(consultation_id) if consultation_id else uuid.uuid4()
    except ValueError:
        return uuid.uuid4()


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return None


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


async def serve(link: Channel, *, worker_id: str = "0", secret: bytes | None = None) -> None:
    """Hello, then requests until the channel ends; then every call is closed. Each request runs in its own task,
    so a slow answer (ICE gathering) holds up no other call; responses and events leave in order, one writer."""
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    service = WorkerService(emit=outbox.put_nowait, worker_id=worker_id)
    service.start()
    requests: set[asyncio.Task[None]] = set()
    writer = asyncio.create_task(_write(link, outbox), name="media-worker-writer")
    try:
        if await _handshake(link, outbox, worker_id=worker_id, secret=secret):
            await _read(link, outbox, service, requests)
    finally:
        for task in requests:
            task.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
        await service.close()
        outbox.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(writer, timeout=5)
        await link.close()
        log.info("media_worker_stopped")


async def _handshake(link: Channel, outbox: asyncio.Queue[dict[str, Any] | None], *, worker_id: str,
                     secret: bytes | None) -> bool:
    try:
        greeting = await asyncio.wait_for(link.receive(), HELLO_TIMEOUT)
    except (TimeoutError, ChannelError, BadMessage):
        return False
    if greeting.get("type") != "hello" or greeting.get("protocol") != channel.PROTOCOL_VERSION:
        outbox.put_nowait(channel.error(None, channel.PROTOCOL_MISMATCH,
                                        f"this worker speaks protocol {channel.PROTOCOL_VERSION}"))
        return False
    nonce = greeting.get("nonce")
    proof = channel.proof(secret, nonce) if secret is not None and isinstance(nonce, str) else None
    outbox.put_nowait(channel.hello(role="worker", worker_id=worker_id, pid=os.getpid(), proof=proof))
    return True


async def _read(link: Channel, outbox: asyncio.Queue[dict[str, Any] | None], service: WorkerService,
                requests: set[asyncio.Task[None]]) -> None:
    while True:
        try:
            message = await link.receive()
        except FrameTooLarge as exc:
            outbox.put_nowait(channel.error(None, channel.FRAME_TOO_LARGE, str(exc)))
            return  # its body is still in the stream: no frame boundary to resume from
        except ChannelError:
            return
        except BadMessage as exc:
            outbox.put_nowait(channel.error(exc.request_id, channel.BAD_MESSAGE, str(exc)))
            continue
        request_id = message.get("id")
        if message["type"] != "request" or not isinstance(request_id, int) or isinstance(request_id, bool):
            outbox.put_nowait(channel.error(request_id if isinstance(request_id, int) else None,
                                            channel.BAD_MESSAGE, "expected a request with an integer id"))
            continue
        task = asyncio.create_task(_run_request(service, outbox, request_id, message), name="media-worker-request")
        requests.add(task)
        task.add_done_callback(requests.discard)


async def _run_request(service: WorkerService, outbox: asyncio.Queue[dict[str, Any] | None], request_id: int,
                       message: dict[str, Any]) -> None:
    try:
        result = await service.handle(message.get("method"), message.get("params"))
    except RequestFailed as failed:
        outbox.put_nowait(channel.error(request_id, failed.code, failed.message))
    except Exception:
        log.exception("media_worker_request_failed", method=str(message.get("method"))[:40])
        outbox.put_nowait(channel.error(request_id, channel.INTERNAL, "the worker failed to handle the request"))
    else:
        outbox.put_nowait(channel.response(request_id, result))


async def _write(link: Channel, outbox: asyncio.Queue[dict[str, Any] | None]) -> None:
    while (message := await outbox.get()) is not None:
        try:
            await link.send(message)
        except ChannelError:
            return


async def _connect(args: argparse.Namespace) -> Channel:
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=channel.MAX_FRAME_BYTES)
    else:
        host, _, port = args.connect.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=channel.MAX_FRAME_BYTES)
    return Channel(reader, writer)


async def _main(args: argparse.Namespace) -> None:
    link = await _connect(args)
    secret = os.environ.get(SECRET_ENV, "").encode() or None
    serving = asyncio.create_task(serve(link, worker_id=args.worker_id, secret=secret), name="media-worker")
    # SIGTERM ends the connection as an end of stream would: the same clean close.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, link.writer.close)
    await serving


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m media.worker", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="the inherited Unix socket to the web process")
    where.add_argument("--connect", metavar="HOST:PORT", help="the web node to join over TCP")
    parser.add_argument("--worker-id", default="0")
    parser.add_argument("--loopback-only", action="store_true",
                        help="pin ICE to 127.0.0.1 (tests and benchmarks; see media/loopback.py)")
    parser.add_argument("--log-format", default="console", choices=("console", "json"))
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from server.observability import configure_logging  # the web process's log format, on the same stderr

    configure_logging(fmt=args.log_format, level=args.log_level)
    structlog.contextvars.bind_contextvars(media_worker=args.worker_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.loopback_only:
        loopback.pin()  # a monkeypatch in the web process never reaches this one
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
