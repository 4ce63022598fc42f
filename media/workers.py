"""Calls hosted by media worker processes (TELEMED_MEDIA_WORKERS > 0), behind the same MediaEngine interface.

`WorkerMediaEngine` starts its workers together at start-up, puts each new call on the live worker with the
fewest calls, and restarts a worker that dies. `WorkerMediaCall` is the room's MediaCall: each method is one
request to the call's worker, and the worker's error codes come back as the exceptions `LocalMediaCall`
raises (UnknownPeer, NegotiationFailed), so the signaling cannot tell where its peers run.

A worker that dies takes its peers with it: each of its calls reports every peer "failed" (the room tells the
browsers `media_failed`, and they rejoin), and the call's next `add_peer` opens it again on a live worker.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any, NoReturn

import structlog
from aiortc import RTCIceServer

from media import channel
from media.calls import IceServersFor, NegotiationFailed, PeerStateListener, UnknownPeer
from media.recording.capture import RecordingSpec
from media.recording.storage import StorageLocation
from media.worker_client import MediaWorker, WorkerError, WorkerGone

log = structlog.get_logger("telemed.media")

#: How long a call waits for a live worker when none is (all restarting) before giving up.
PLACEMENT_TIMEOUT = 30.0
#: Restarting a worker that keeps dying: the wait doubles from the first to the last, then stays.
RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
#: A worker that lived this long before dying starts its backoff afresh.
STABLE_SECONDS = 60.0


class MediaUnavailable(RuntimeError):
    """No media worker could take the call in time."""


def ice_server_params(servers: list[RTCIceServer]) -> list[dict[str, Any]]:
    """RTCIceServers as the channel carries them (`add_peer`'s `ice_servers`)."""
    return [{"urls": [server.urls] if isinstance(server.urls, str) else list(server.urls),
             "username": server.username, "credential": server.credential} for server in servers]


class WorkerMediaCall:
    """A call whose peers live in a media worker: the room's MediaCall, forwarded over the channel."""

    def __init__(self, engine: WorkerMediaEngine, call_id: uuid.UUID, on_peer_state: PeerStateListener) -> None:
        self.call_id = call_id
        self.key = uuid.uuid4().hex  # the call's id on the channel: unique even if a consultation's room reopens
        self.worker: MediaWorker | None = None
        self._engine = engine
        self._on_peer_state = on_peer_state
        self._opened = False
        self._peers: set[str] = set()  # on self.worker
        self._recording: dict[str, Any] | None = None  # start_recording's params, to resume on a new worker
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    async def add_peer(self, peer_id: str, role: str = "") -> None:
        """A participant's peer in the call's worker (re-opening the call on a live worker if its worker died)."""
        for _ in range(2):  # the worker may die under us: once more, on another
            if self._closed:
                raise UnknownPeer(peer_id)
            worker = await self._open()
            params = {"call_id": self.key, "peer_id": peer_id, "role": role,
                      "ice_servers": ice_server_params(self._engine.ice_servers(peer_id))}
            try:
                await worker.request("add_peer", params)
            except WorkerGone:
                continue
            except WorkerError as exc:
                _raise_as_media_error(exc, peer_id)
            self._peers.add(peer_id)
            return
        raise MediaUnavailable("the media workers keep failing")

    async def answer(self, peer_id: str, offer_sdp: str) -> str:
        result = await self._request(peer_id, "answer", sdp=offer_sdp)
        sdp = result.get("sdp")
        if not isinstance(sdp, str):
            raise NegotiationFailed("the media worker gave no answer")
        return sdp

    async def add_candidate(self, peer_id: str, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        await self._request(peer_id, "add_candidate", candidate=candidate, sdp_mid=sdp_mid,
                            sdp_mline_index=sdp_mline_index)

    async def remove_peer(self, peer_id: str) -> None:
        """Close the peer in the worker; nothing to do if the worker (and so the peer) is gone."""
        if peer_id not in self._peers or self.worker is None:
            return
        self._peers.discard(peer_id)
        try:
            await self.worker.request("remove_peer", {"call_id": self.key, "peer_id": peer_id})
        except (WorkerGone, WorkerError) as exc:
            log.info("media_remove_peer_failed", error=str(exc))

    async def start_recording(self, spec: RecordingSpec, location: StorageLocation) -> None:
        """Record in the call's worker; if the worker dies, the call's next worker records on (new tracks)."""
        self._recording = {"call_id": self.key, "recording_id": spec.recording_id,
                           "data_key": base64.b64encode(spec.data_key).decode(),
                           "segment_seconds": spec.segment_seconds, "storage": location.as_params()}
        worker = await self._open()
        await worker.request("start_recording", self._recording)

    async def stop_recording(self, reason: str) -> None:
        """Complete the segments and write the end marker in the worker (nothing to do if it died)."""
        recording, self._recording = self._recording, None
        if recording is None or self.worker is None or not self._opened:
            return
        try:
            await self.worker.request("stop_recording", {"call_id": self.key, "reason": reason})
        except (WorkerGone, WorkerError) as exc:
            log.info("media_stop_recording_failed", error=str(exc))

    async def close(self) -> None:
        """Close the call's peers in its worker. Idempotent."""
        if self._closed:
            return
        self._closed = True
        worker, opened = self.worker, self._opened
        self._peers.clear()
        self._engine.forget(self)
        if worker is not None and opened:
            try:
                await worker.request("close_call", {"call_id": self.key})
            except (WorkerGone, WorkerError) as exc:
                log.info("media_close_call_failed", error=str(exc))

    def peer_state(self, worker: MediaWorker, peer_id: str, state: str) -> None:
        """An event from a worker: tell the room, if it is about a peer of ours there."""
        if worker is self.worker and peer_id in self._peers:
            self._on_peer_state(peer_id, state)

    def worker_lost(self, worker: MediaWorker) -> None:
        """The call's worker died with its peers: each one "failed" for the room; the next add_peer re-opens."""
        if worker is not self.worker:
            return
        peers, self._peers = sorted(self._peers), set()
        self._opened = False
        for peer_id in peers:
            self._on_peer_state(peer_id, "failed")

    async def _open(self) -> MediaWorker:
        async with self._lock:
            if self.worker is None or not self.worker.live:
                self.worker = await self._engine.rehome(self)
                self._opened = False
            if not self._opened:
                await self.worker.request("open_call", {"call_id": self.key, "consultation_id": str(self.call_id)})
                self._opened = True
                if self._recording is not None:  # the previous worker died recording: this one records on
                    await self.worker.request("start_recording", self._recording)
            return self.worker

    async def _request(self, peer_id: str, method: str, **params: Any) -> dict[str, Any]:
        worker = self.worker
        if peer_id not in self._peers or worker is None:
            raise UnknownPeer(peer_id)
        try:
            return await worker.request(method, {"call_id": self.key, "peer_id": peer_id, **params})
        except WorkerGone:
            raise UnknownPeer(peer_id) from None  # its "failed" state has gone to the room
        except WorkerError as exc:
            _raise_as_media_error(exc, peer_id)


def _raise_as_media_error(exc: WorkerError, peer_id: str) -> NoReturn:
    """The worker's error codes as media.calls' exceptions; anything else stays a WorkerError."""
    if exc.code in (channel.UNKNOWN_PEER, channel.UNKNOWN_CALL):
        raise UnknownPeer(peer_id) from None
    if exc.code == channel.NEGOTIATION_FAILED:
        raise NegotiationFailed(exc.message) from None
    if exc.code == channel.PEER_EXISTS:
        raise ValueError(f"peer {peer_id} exists") from None
    raise exc


class WorkerMediaEngine:
    """N media worker processes, each hosting whole calls; placement by load, restart on death."""

    def __init__(self, *, workers: int, ice_servers: IceServersFor, loopback_only: bool = False,
                 log_format: str = "console", log_level: str = "INFO") -> None:
        """`loopback_only` pins the workers' ICE to 127.0.0.1 (media.loopback): tests and benchmarks only."""
        if workers < 1:
            raise ValueError("at least one media worker (0 means LocalMediaEngine)")
        self.ice_servers = ice_servers
        self._options: dict[str, Any] = {"loopback_only": loopback_only, "log_format": log_format,
                                         "log_level": log_level}
        self._workers = [self._new_worker(index) for index in range(workers)]
        self._calls: dict[str, WorkerMediaCall] = {}
        self._restarts: dict[int, asyncio.Task[None]] = {}
        self._deaths: dict[int, int] = {}
        self._started_at: dict[int, float] = {}
        self._worker_ready = asyncio.Event()
        self._closing = False

    @property
    def workers(self) -> tuple[MediaWorker, ...]:
        return tuple(self._workers)

    @property
    def calls(self) -> int:
        """Calls open on this node."""
        return len(self._calls)

    async def start(self) -> None:
        """Start every worker at once (start-up waits for the slowest, not the sum); all or none."""
        results = await asyncio.gather(*(self._start(index) for index in range(len(self._workers))),
                                       return_exceptions=True)
        failure = next((result for result in results if isinstance(result, BaseException)), None)
        if failure is not None:
            await self.close()
            raise failure

    def open_call(self, call_id: uuid.UUID, on_peer_state: PeerStateListener) -> WorkerMediaCall:
        """A call, placed now on the least-loaded live worker (or, if none is live, at its first peer)."""
        call = WorkerMediaCall(self, call_id, on_peer_state)
        self._calls[call.key] = call
        worker = self._least_loaded()
        if worker is not None:
            call.worker = worker
            worker.calls.add(call)
        return call

    async def rehome(self, call: WorkerMediaCall) -> MediaWorker:
        """A live worker for a call whose worker died (or that has none yet), waiting for a restart if need be."""
        if call.worker is not None:
            call.worker.calls.discard(call)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PLACEMENT_TIMEOUT
        while (worker := self._least_loaded()) is None:
            if self._closing or loop.time() >= deadline:
                raise MediaUnavailable("no media worker is running")
            try:
                await asyncio.wait_for(self._worker_ready.wait(), deadline - loop.time())
            except TimeoutError:
                continue
        worker.calls.add(call)
        return worker

    def forget(self, call: WorkerMediaCall) -> None:
        self._calls.pop(call.key, None)
        if call.worker is not None:
            call.worker.calls.discard(call)

    async def stats(self) -> list[dict[str, Any]]:
        """Each live worker's own figures (docs/media-workers.md, `stats`)."""
        live = [worker for worker in self._workers if worker.live]
        return list(await asyncio.gather(*(worker.request("stats") for worker in live)))

    async def close(self) -> None:
        """Close every call, then end every worker's channel and wait for the processes to exit."""
        self._closing = True
        self._worker_ready.set()  # calls waiting for a worker give up
        for task in self._restarts.values():
            task.cancel()
        await asyncio.gather(*self._restarts.values(), return_exceptions=True)
        self._restarts.clear()
        await asyncio.gather(*(call.close() for call in list(self._calls.values())), return_exceptions=True)
        codes = await asyncio.gather(*(worker.stop() for worker in self._workers), return_exceptions=True)
        for worker, code in zip(self._workers, codes, strict=True):
            if code not in (0, None):
                log.warning("media_worker_exit", worker=worker.worker_id, code=code)

    def _new_worker(self, index: int) -> MediaWorker:
        return MediaWorker(str(index), on_event=self._on_event, on_lost=self._on_lost, **self._options)

    async def _start(self, index: int) -> None:
        worker = self._workers[index]
        await worker.start()
        if self._closing:
            await worker.stop()
            return
        self._started_at[index] = asyncio.get_running_loop().time()
        self._worker_ready.set()
        self._worker_ready.clear()

    def _least_loaded(self) -> MediaWorker | None:
        live = [worker for worker in self._workers if worker.live]
        return min(live, key=lambda worker: len(worker.calls)) if live else None

    def _on_event(self, worker: MediaWorker, message: dict[str, Any]) -> None:
        params = message.get("params")
        if message.get("event") != "peer_state" or not isinstance(params, dict):
            return
        call = self._calls.get(str(params.get("call_id")))
        if call is not None:
            call.peer_state(worker, str(params.get("peer_id")), str(params.get("state")))

    def _on_lost(self, worker: MediaWorker) -> None:
        for call in list(worker.calls):
            call.worker_lost(worker)
        worker.calls.clear()
        if self._closing or worker not in self._workers:
            return
        index = self._workers.index(worker)
        if index not in self._restarts:
            self._restarts[index] = asyncio.create_task(self._restart(index, worker),
                                                        name=f"media-worker-{index}-restart")

    async def _restart(self, index: int, dead: MediaWorker) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._started_at.get(index, loop.time()) >= STABLE_SECONDS:
            self._deaths[index] = 0
        try:
            await dead.stop()  # reap it
            while not self._closing:
                deaths = self._deaths.get(index, 0)
                self._deaths[index] = deaths + 1
                await asyncio.sleep(RESTART_BACKOFF[min(deaths, len(RESTART_BACKOFF) - 1)])
                self._workers[index] = self._new_worker(index)
                try:
                    await self._start(index)
                except Exception:
                    log.exception("media_worker_restart_failed", worker=index)
                    continue
                log.info("media_worker_restarted", worker=index, pid=self._workers[index].pid)
                return
        finally:
            self._restarts.pop(index, None)
