"""The web process's side of one media worker: the spawned process, its channel, requests and events.

`MediaWorker.start()` spawns `python -m media.worker` (a fresh interpreter) with one end of a Unix socket pair
and waits for its hello. `request()` sends a request and waits for the response with the same id; events go to
`on_event`. When the channel ends without `stop()` having been asked for (the process crashed or was killed),
every waiting request fails with WorkerGone and `on_lost` is told once: the engine then fails the worker's
calls over and starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import structlog

from media import channel
from media.channel import BadMessage, Channel, ChannelError

log = structlog.get_logger("telemed.media")

#: A fresh interpreter imports aiortc and PyAV first: seconds on a busy machine.
START_TIMEOUT = 30.0
#: An answer waits for ICE gathering (aiortc gathers before answering; with STUN/TURN servers, seconds).
REQUEST_TIMEOUT = 30.0
#: A worker closes its peers and exits at end of stream; after this it is killed.
STOP_TIMEOUT = 10.0


class WorkerGone(ConnectionError):
    """The worker's channel ended (the process exited or was killed) before it answered."""


class WorkerError(RuntimeError):
    """The worker answered a request with an error; `code` is one of media.channel's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class MediaWorker:
    """One media worker process, driven over its channel. Not restarted here: see WorkerMediaEngine."""

    def __init__(self, worker_id: str, *, on_event: Callable[[MediaWorker, dict[str, Any]], None],
                 on_lost: Callable[[MediaWorker], None], loopback_only: bool = False,
                 log_format: str = "console", log_level: str = "INFO") -> None:
        self.worker_id = worker_id
        self.calls: set[Any] = set()  # the calls placed here (the engine's WorkerMediaCalls): its load
        self._on_event = on_event
        self._on_lost = on_lost
        self._argv = [sys.executable, "-m", "media.worker", "--worker-id", worker_id,
                      "--log-format", log_format, "--log-level", log_level]
        if loopback_only:
            self._argv.append("--loopback-only")
        self.process: asyncio.subprocess.Process | None = None
        self._link: Channel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._live = False
        self._stopping = False

    @property
    def live(self) -> bool:
        """Started, said hello, and its channel has not ended."""
        return self._live

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Spawn the process and wait for its hello; on failure nothing is left running."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self._argv, "--fd", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker holds its end now: when it dies, ours reads end of stream
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=channel.MAX_FRAME_BYTES)
            self._link = Channel(reader, writer)
            await asyncio.wait_for(self._handshake(self._link), START_TIMEOUT)
        except BaseException:
            if self._link is None:
                ours.close()
            await self._abort()
            raise
        self._live = True
        self._reader = asyncio.create_task(self._read(self._link), name=f"media-worker-{self.worker_id}-reader")
        log.info("media_worker_started", worker=self.worker_id, pid=self.pid)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The worker's result; WorkerError if it answered with an error, WorkerGone if it went away first."""
        if not self._live or self._link is None:
            raise WorkerGone(f"media worker {self.worker_id} is not running")
        self._next_id += 1
        request_id = self._next_id
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            await self._link.send(channel.request(request_id, method, params or {}))
            message = await asyncio.wait_for(asyncio.shield(answer), REQUEST_TIMEOUT)
        except ChannelError as exc:
            raise WorkerGone(f"media worker {self.worker_id} went away") from exc
        except TimeoutError:
            raise WorkerError(channel.INTERNAL, f"no answer to {method} within {REQUEST_TIMEOUT:.0f} s") from None
        finally:
            self._pending.pop(request_id, None)
        if message["type"] == "error":
            error = message.get("error") or {}
            raise WorkerError(str(error.get("code", channel.INTERNAL)), str(error.get("message", "")))
        result = message.get("result")
        return result if isinstance(result, dict) else {}

    async def stop(self) -> int | None:
        """End the channel (the worker closes its peers and exits) and reap the process; its exit code."""
        self._stopping = True
        self._live = False
        if self._link is not None:
            await self._link.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return await self._reap()

    def kill(self) -> None:
        """SIGKILL the process (tests: a crash); the channel's end of stream reports it lost."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def _handshake(self, link: Channel) -> None:
        await link.send(channel.hello(role="web", nonce=secrets.token_hex(16)))
        greeting = await link.receive()
        if greeting.get("type") != "hello" or greeting.get("protocol") != channel.PROTOCOL_VERSION:
            raise WorkerError(channel.PROTOCOL_MISMATCH, f"the worker answered {greeting.get('type')!r} "
                              f"(protocol {greeting.get('protocol')!r}, not {channel.PROTOCOL_VERSION})")

    async def _read(self, link: Channel) -> None:
        try:
            while True:
                try:
                    message = await link.receive()
                except BadMessage as exc:
                    log.warning("media_worker_bad_message", worker=self.worker_id, error=str(exc))
                    continue
                kind = message["type"]
                if kind in ("response", "error"):
                    waiting = self._pending.get(message.get("id"))  # type: ignore[arg-type]  # None finds nothing
                    if waiting is not None and not waiting.done():
                        waiting.set_result(message)
                    elif kind == "error":
                        log.warning("media_worker_error", worker=self.worker_id, error=message.get("error"))
                elif kind == "event":
                    try:
                        self._on_event(self, message)
                    except Exception:
                        log.exception("media_worker_event_failed", worker=self.worker_id)
        except ChannelError:
            pass
        finally:
            self._live = False
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(WorkerGone(f"media worker {self.worker_id} went away"))
            if not self._stopping:
                log.warning("media_worker_lost", worker=self.worker_id, pid=self.pid)
                self._on_lost(self)

    async def _abort(self) -> None:
        self._stopping = True
        if self._link is not None:
            await self._link.close()
        self.kill()
        await self._reap()

    async def _reap(self) -> int | None:
        if self.process is None:
            return None
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("media_worker_killed", worker=self.worker_id, pid=self.pid)
            self.kill()
            with contextlib.suppress(ProcessLookupError):
                return await self.process.wait()
            return None

