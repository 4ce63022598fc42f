"""Two-party calls through the media forwarder: server CPU, forwarded frames, losses and delay per call count.

The server side (LocalMediaEngine: ServerPeer, Relay, ForwardedTrack with the passthrough decoder) runs in this
process; the clients (two per call, aiortc with synthetic VP8 640x480 ~1 Mbit/s 30 fps and Opus 20 ms sources)
run in a spawned process and exchange SDP with the server over a multiprocessing Pipe. All ICE candidates are
127.0.0.1 (aioice's host addresses patched, no ICE servers). The sources loop a few seconds of frames encoded
once, so the clients spend no CPU on encoding; a keyframe request restarts the loop at its keyframe.

Delay is matched by frame bytes: the sender of a direction and its receiver live in the same client process, so
the time from the sending track handing a frame to aiortc until the receiving track returns it (two aiortc
hops, the server's relay in between) needs no clock sync. The baseline runs aiortc's stock server instead
(decode, `MediaRelay`, re-encode) in a fresh spawned process, as `media.passthrough.install()` is process-wide.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, FPS, VIDEO_BITRATE = 640, 480, 30, 1_000_000
LOOP_SECONDS = 3
AUDIO_RATE, AUDIO_SAMPLES = 48000, 960  # 20 ms Opus packets
MEASURE_SECONDS = 8.0
SETTLE_SECONDS = 2.0  # after every client receives, before measuring
CONNECT_TIMEOUT = 20.0
LEVELS = (1, 2, 4, 8)
BASELINE_LEVELS = (1, 2)
MAX_LOSS = 0.05  # stop adding calls once a level loses more than this share of frames
MAX_LEVEL_SECONDS = 45.0  # ...or once a level takes longer than this, end to end
#: The media workers series: this many worker processes (the issue's figure for a 2-core machine) at these levels.
BENCH_WORKERS = 2
WORKER_LEVELS = (8, 12, 16, 20, 24)
#: One client process's share: past ~8 calls (32 streams each way) a single client loop would be the bottleneck.
CALLS_PER_CLIENT_PROCESS = 8
#: py-spy: only the samples holding the GIL (the Python work) or, if False, every active thread (C code too).
PROFILE_GIL_ONLY = True

Conn = multiprocessing.connection.Connection


@dataclass
class Encoded:
    """A few seconds of frames, encoded once: (bytes, keyframe) per frame."""

    video: list[bytes]
    audio: list[bytes]


def _loopback_only() -> None:
    """ICE on 127.0.0.1 only, in this process (media.loopback; aioice leaves loopback out by itself)."""
    from media import loopback

    loopback.pin()


def encode_sources() -> Encoded:
    """LOOP_SECONDS of a moving, partly noisy 640x480 picture (first frame the only keyframe) and of a tone sweep."""
    import av

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = VIDEO_BITRATE
    codec.gop_size = 100_000
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    codec.thread_count = 1
    ramp = bytes(range(256)) * 8
    rng = random.Random(1)
    noise = bytes(rng.randrange(256) for _ in range(WIDTH * HEIGHT))
    video = []
    for index in range(FPS * LOOP_SECONDS):
        frame = av.VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        luma = frame.planes[0]
        rows = []
        for row in range(HEIGHT):
            start = (row + 4 * index) % 256
            line = bytearray(ramp[start : start + WIDTH])
            at, offset = (index * 5) % (WIDTH // 2), (row * 7 + index * 13) % (WIDTH * HEIGHT - WIDTH)
            line[at : at + WIDTH // 4] = noise[offset : offset + WIDTH // 4]
            rows.append(bytes(line).ljust(luma.line_size, b"\0"))
        luma.update(b"".join(rows))
        for plane in frame.planes[1:]:
            plane.update(bytes([100 + index % 50]) * plane.buffer_size)
        frame.pts = index
        video.append(b"".join(bytes(p) for p in codec.encode(frame)))
    audio_codec = av.CodecContext.create("libopus", "w")
    audio_codec.sample_rate, audio_codec.layout, audio_codec.format = (
        AUDIO_RATE, "stereo", "s16")
    audio_codec.bit_rate = 64_000
    audio_codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    audio = []
    for index in range(AUDIO_RATE * LOOP_SECONDS // AUDIO_SAMPLES):
        sound = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_SAMPLES)
        step = 300 * (1 + index / 100) * 2 * math.pi / AUDIO_RATE
        samples = [int(6000 * math.sin((index * AUDIO_SAMPLES + n) * step)) for n in range(AUDIO_SAMPLES)]
        sound.planes[0].update(struct.pack(f"<{2 * AUDIO_SAMPLES}h", *(s for s in samples for _ in (0, 1))))
        sound.sample_rate, sound.pts = AUDIO_RATE, index * AUDIO_SAMPLES
        sound.time_base = fractions.Fraction(1, AUDIO_RATE)
        packets = [bytes(p) for p in audio_codec.encode(sound)]
        if packets:
            audio.append(packets[0])
    return Encoded(video=[v for v in video if v], audio=audio)


# --- the client process --------------------------------------------------------------------------------------


@dataclass
class Direction:
    """One sender's frames, and what its peer received of them (both in the client process)."""

    sent_at: dict[bytes, int] = field(default_factory=dict)  # frame bytes -> its latest sequence number
    send_times: list[float] = field(default_factory=list)  # by sequence number
    received: dict[int, float] = field(default_factory=dict)  # sequence number -> receive time
    received_times: list[float] = field(default_factory=list)  # every frame received, matched or not


def _client_main(conn: Conn, calls: int, encoded: Encoded) -> None:
    _loopback_only()
    try:
        asyncio.run(_clients(conn, calls, encoded))
    finally:
        conn.close()


async def _clients(conn: Conn, calls: int, encoded: Encoded) -> None:
    import av
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    from media import passthrough
    from media.forwarding import PASSTHROUGH_MIME_TYPES

    passthrough.install()  # the clients receive encoded frames: no decoding on this side either
    loop = asyncio.get_running_loop()

    class LoopedSource(MediaStreamTrack):
        def __init__(self, kind: str, frames: list[bytes], rate: float, ticks: int, clock: int,
                     direction: Direction) -> None:
            super().__init__()
            self.kind = kind
            self._frames, self._rate, self._ticks = frames, rate, ticks
            self._time_base = fractions.Fraction(1, clock)
            self._direction = direction
            self._index = 0
            self._position = 0
            self._start: float | None = None

        async def restart_at_keyframe(self) -> None:
            self._position = 0

        async def recv(self) -> av.Packet:
            if self.readyState != "live":
                raise MediaStreamError
            if self._start is None:
                self._start = loop.time()
            index = self._index
            self._index += 1
            await asyncio.sleep(max(0.0, self._start + index / self._rate - loop.time()))
            data = self._frames[self._position % len(self._frames)]
            self._position += 1
            packet = av.Packet(data)
            packet.pts, packet.time_base = index * self._ticks, self._time_base
            direction = self._direction
            direction.sent_at[data] = len(direction.send_times)
            direction.send_times.append(time.perf_counter())
            return packet

    async def collect(track: MediaStreamTrack, direction: Direction) -> None:
        try:
            while True:
                packet = await track.recv()
                now = time.perf_counter()
                direction.received_times.append(now)
                sequence = direction.sent_at.get(bytes(packet))  # type: ignore[arg-type]
                if sequence is not None and sequence not in direction.received:
                    direction.received[sequence] = now
        except MediaStreamError:
            pass

    pcs: list[RTCPeerConnection] = []
    directions: list[tuple[str, Direction]] = []  # (kind, direction): into what the peer's receiver collects
    receivers: list[tuple[RTCPeerConnection, str, Direction]] = []
    for _ in range(calls):
        pair = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2)]
        flows = {(side, kind): Direction() for side in range(2) for kind in ("video", "audio")}
        for side, pc in enumerate(pair):
            video = LoopedSource("video", encoded.video, FPS, 90000 // FPS, 90000, flows[side, "video"])
            audio = LoopedSource("audio", encoded.audio, AUDIO_RATE / AUDIO_SAMPLES, AUDIO_SAMPLES, AUDIO_RATE,
                                 flows[side, "audio"])
            for source in (video, audio):
                transceiver = pc.addTransceiver(source, direction="sendrecv")
                capabilities = RTCRtpSender.getCapabilities(source.kind).codecs
                transceiver.setCodecPreferences(
                    [c for c in capabilities if c.mimeType in PASSTHROUGH_MIME_TYPES[source.kind]])
                if source.kind == "video":
                    passthrough.on_keyframe_request(transceiver.sender, video.restart_at_keyframe)
            for kind in ("video", "audio"):
                receivers.append((pc, kind, flows[1 - side, kind]))  # this side receives what the other sends
                directions.append((kind, flows[side, kind]))
        pcs.extend(pair)
    tasks: list[asyncio.Task[None]] = []
    try:
        for pc in pcs:
            await pc.setLocalDescription(await pc.createOffer())  # gathers every (loopback) candidate
        conn.send(("offers", [pc.localDescription.sdp for pc in pcs]))
        answers = await asyncio.to_thread(conn.recv)
        for pc, sdp in zip(pcs, answers, strict=True):
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        for pc, kind, direction in receivers:
            transceiver = next(t for t in pc.getTransceivers() if t.kind == kind)
            tasks.append(asyncio.create_task(collect(transceiver.receiver.track, direction)))
        deadline = loop.time() + CONNECT_TIMEOUT
        while loop.time() < deadline and not all(d.received_times for _, d in directions):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        ready = all(d.received_times for _, d in directions)
        if ready:
            await asyncio.sleep(SETTLE_SECONDS)
        conn.send(("ready", ready))
        if not ready:
            return
        await asyncio.to_thread(conn.recv)  # the server has taken its snapshot
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(MEASURE_SECONDS)
        t1 = time.perf_counter()
        conn.send(("stopped", None))
        cpu = time.process_time() - cpu0
        await asyncio.sleep(0.5)  # frames in flight at t1 arrive
        stats: dict[str, Any] = {"client_cpu": cpu / (t1 - t0), "seconds": t1 - t0}
        for kind in ("video", "audio"):
            flows_of_kind = [d for k, d in directions if k == kind]
            sent = lost = received = 0
            delays: list[float] = []
            for d in flows_of_kind:
                window = [(n, at) for n, at in enumerate(d.send_times) if t0 <= at < t1]
                sent += len(window)
                lost += sum(1 for n, _ in window if n not in d.received)
                delays.extend(d.received[n] - at for n, at in window if n in d.received)
                received += sum(1 for at in d.received_times if t0 <= at < t1)
            stats[kind] = {"sent": sent, "lost": lost, "received": received, "delays": delays}
        conn.send(("stats", stats))
        await asyncio.to_thread(conn.recv)  # the server is done
    finally:
        for task in tasks:
            task.cancel()
        for pc in pcs:
            await pc.close()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the server side -----------------------------------------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _receive(conn: Conn, expected: str) -> Any:
    tag, value = await asyncio.to_thread(conn.recv)
    if tag != expected:
        raise RuntimeError(f"client sent {tag!r}, expected {expected!r}")
    return value


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has been busy since boot (/proc/stat), for the other-load figure."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


Usage = Callable[[], Awaitable[tuple[dict[str, float], float]]]  # CPU seconds so far by process, RSS MiB


async def _this_process() -> tuple[dict[str, float], float]:
    return {"server": time.process_time()}, _rss_mib()


async def _measure(conns: list[Conn], usage: Usage = _this_process,
                   profiler: Callable[[], Callable[[], None]] | None = None) -> dict[str, Any] | None:
    """Clients ready -> snapshot -> clients measure -> snapshot: server CPU (each process) and RSS, plus the
    clients' figures, added up over the client processes."""
    ready = [await _receive(conn, "ready") for conn in conns]
    if not all(ready):
        return None
    cpu0, t0, machine0 = await usage(), time.perf_counter(), _machine_busy_seconds()
    for conn in conns:
        conn.send("go")
    finish_profile = profiler() if profiler is not None else None
    for conn in conns:
        await _receive(conn, "stopped")
    wall = time.perf_counter() - t0
    machine = (_machine_busy_seconds() - machine0) / wall
    (cpu1, rss) = await usage()
    per_process = {name: (cpu1[name] - cpu0[0][name]) / wall for name in cpu1 if name in cpu0[0]}
    parts: list[dict[str, Any]] = [await _receive(conn, "stats") for conn in conns]
    for conn in conns:
        conn.send("done")
    if finish_profile is not None:
        finish_profile()
    stats: dict[str, Any] = {
        "seconds": statistics.mean(part["seconds"] for part in parts),
        "client_cpu": sum(part["client_cpu"] for part in parts),
        "server_cpu": sum(per_process.values()), "per_process_cpu": per_process, "rss_mib": rss}
    # What else ran meanwhile (other users of a shared machine): everything busy, less the bench's own processes.
    stats["other_cpu"] = max(0.0, machine - stats["server_cpu"] - stats["client_cpu"])
    for kind in ("video", "audio"):
        stats[kind] = {key: sum(part[kind][key] for part in parts) for key in ("sent", "lost", "received")}
        stats[kind]["delays"] = [delay for part in parts for delay in part[kind]["delays"]]
    return stats


async def _answer_offers(engine: Any, conns: list[Conn], chunks: list[int], record_root: Path | None = None) -> None:
    """Each client process's offers, two per call, answered by one call's two peers; each call recorded (sealed
    segments under `record_root`) if given."""
    from media.recording.capture import RecordingSpec
    from media.recording.storage import StorageLocation

    for conn, calls in zip(conns, chunks, strict=True):
        offers = await _receive(conn, "offers")
        answers = []
        for number in range(calls):
            call = engine.open_call(uuid.uuid4(), lambda peer_id, state: None)
            if record_root is not None:
                await call.start_recording(RecordingSpec(str(uuid.uuid4()), os.urandom(32)),
                                           StorageLocation(str(record_root)))
            for side in ("physician", "patient"):
                await call.add_peer(side, side)
            for index, side in enumerate(("physician", "patient")):
                answers.append(await call.answer(side, offers[2 * number + index]))
        conn.send(answers)


async def _serve_passthrough(conns: list[Conn], chunks: list[int]) -> dict[str, Any] | None:
    from media.calls import LocalMediaEngine

    engine = LocalMediaEngine(ice_servers=lambda peer_id: [])
    engine.start()
    try:
        await _answer_offers(engine, conns, chunks)
        return await _measure(conns)
    finally:
        await engine.close()


async def _serve_workers(conns: list[Conn], chunks: list[int], workers: int,
                         profile: Path | None, record_root: Path | None = None) -> dict[str, Any] | None:
    """The same calls hosted by media worker processes (media.workers), the web side in this process."""
    from media.workers import WorkerMediaEngine

    engine = WorkerMediaEngine(workers=workers, ice_servers=lambda peer_id: [], loopback_only=True,
                               log_level="WARNING")
    await engine.start()

    async def usage() -> tuple[dict[str, float], float]:
        figures = await engine.stats()
        cpu = {"web": time.process_time(), **{f"worker {s['worker_id']}": s["cpu_seconds"] for s in figures}}
        return cpu, _rss_mib() + sum(s["rss_kib"] or 0 for s in figures) / 1024

    def profiler() -> Callable[[], None]:
        assert profile is not None
        pids = [(worker.worker_id, worker.pid) for worker in engine.workers if worker.pid is not None]
        return _py_spy(profile, [(f"worker-{worker_id}-{sum(chunks)}calls", pid) for worker_id, pid in pids])

    try:
        await _answer_offers(engine, conns, chunks, record_root)
        return await _measure(conns, usage, profiler if profile is not None else None)
    finally:
        await engine.close()


def _py_spy(folder: Path, targets: list[tuple[str, int]]) -> Callable[[], None]:
    """Sample each process with py-spy (non-blocking: it never pauses the worker) for the measured seconds, at
    100 Hz (250 Hz made a loss-free level lose frames); PROFILE_GIL_ONLY: only samples holding the GIL."""
    folder.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    spies = [(folder / f"{name}.txt", subprocess.Popen(  # noqa: S603  # our own pids and paths, no shell
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(MEASURE_SECONDS)), "--rate", "100",
         *(["--gil"] if PROFILE_GIL_ONLY else []), "--nonblocking", "--format", "raw",
         "--output", str(folder / f"{name}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)) for name, pid in targets]

    def finish() -> None:
        for path, spy in spies:
            spy.wait(timeout=MEASURE_SECONDS + 30)
            if path.exists():
                print(f"py-spy profile: {path}")
                summarise_profile(path)

    return finish


def summarise_profile(path: Path, top: int = 12) -> None:
    """Where a worker's time goes: samples by the innermost frame (self) and by frame anywhere (inclusive),
    and by library (the innermost frame's file)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        total += count
        own[_frame_name(frames[-1])] += count
        libraries[_library(frames[-1])] += count
        for name in {_frame_name(frame) for frame in frames}:
            anywhere[name] += count
    if not total:
        print("  (no samples)")
        return
    print(f"  {total} samples; by innermost function (self):")
    for name, count in own.most_common(top):
        print(f"    {count / total:6.1%}  {name}")
    print("  by library (innermost frame):")
    for name, count in libraries.most_common(8):
        print(f"    {count / total:6.1%}  {name}")
    print("  inclusive (a frame anywhere on the stack):")
    for name, count in anywhere.most_common(top + 8):
        print(f"    {count / total:6.1%}  {name}")


def _frame_name(frame: str) -> str:
    """`recv (aiortc/rtcrtpreceiver.py:123)` -> `recv (aiortc/rtcrtpreceiver.py)`."""
    function, _, where = frame.partition(" (")
    return f"{function} ({_short_path(where.rstrip(')').rpartition(':')[0] or where.rstrip(')'))})"


def _library(frame: str) -> str:
    where = _short_path(frame.partition(" (")[2].rstrip(")").rpartition(":")[0])
    return where.split("/")[0] if "/" in where else where or "?"


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


async def _serve_transcoding(conn: Conn, calls: int) -> dict[str, Any] | None:
    """aiortc's stock relay: each server peer decodes, MediaRelay fans out, the other peer's sender re-encodes."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    relay = MediaRelay()
    pcs: list[RTCPeerConnection] = []
    try:
        offers = await _receive(conn, "offers")
        answers = []
        for number in range(calls):
            pair = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2)]
            pcs.extend(pair)
            for index, pc in enumerate(pair):
                await pc.setRemoteDescription(RTCSessionDescription(offers[2 * number + index], "offer"))
            for index, pc in enumerate(pair):
                other = pair[1 - index]
                for transceiver in other.getTransceivers():
                    pc.addTrack(relay.subscribe(transceiver.receiver.track))
            for pc in pair:
                await pc.setLocalDescription(await pc.createAnswer())
                answers.append(pc.localDescription.sdp)
        conn.send(answers)
        return await _measure([conn])
    finally:
        for pc in pcs:
            await pc.close()


def _baseline_main(conn: Conn, results: Conn, calls: int) -> None:
    _loopback_only()
    try:
        results.send(asyncio.run(_serve_transcoding(conn, calls)))
    finally:
        conn.close()
        results.close()


def _chunks(calls: int) -> list[int]:
    """Calls per client process: at most CALLS_PER_CLIENT_PROCESS each, evenly spread."""
    processes = max(1, math.ceil(calls / CALLS_PER_CLIENT_PROCESS))
    return [calls // processes + (1 if index < calls % processes else 0) for index in range(processes)]


def _run_level(calls: int, encoded: Encoded, *, baseline: bool = False, workers: int = 0,
               profile: Path | None = None, record_root: Path | None = None) -> dict[str, Any] | None:
    context = multiprocessing.get_context("spawn")
    chunks = [calls] if baseline else _chunks(calls)
    pipes = [context.Pipe() for _ in chunks]
    clients = [context.Process(target=_client_main, args=(client_end, share, encoded), name=f"bench-call-clients-{n}")
               for n, ((_, client_end), share) in enumerate(zip(pipes, chunks, strict=True))]
    for client in clients:
        client.start()
    server_ends = [server_end for server_end, _ in pipes]
    try:
        if workers:
            return asyncio.run(_serve_workers(server_ends, chunks, workers, profile, record_root))
        if not baseline:
            return asyncio.run(_serve_passthrough(server_ends, chunks))
        results, results_end = context.Pipe(duplex=False)
        server = context.Process(target=_baseline_main, args=(server_ends[0], results_end, calls),
                                 name="bench-call-baseline-server")
        server.start()
        try:
            if not results.poll(MAX_LEVEL_SECONDS + 30):
                raise TimeoutError("the baseline server did not report")
            result: dict[str, Any] | None = results.recv()
            return result
        finally:
            server.join(10)
            if server.is_alive():
                server.kill()
    finally:
        for client in clients:
            client.join(15)
            if client.is_alive():
                client.kill()


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[98]


def _report(label: str, calls: int, stats: dict[str, Any], *, delay: bool) -> float:
    """Print one level's lines; the share of frames lost."""
    seconds = stats["seconds"]
    video, audio = stats["video"], stats["audio"]
    sent = video["sent"] + audio["sent"]
    lost = video["lost"] + audio["lost"]
    name = f"{label}, {calls} call{'s' if calls > 1 else ''}"
    print(f"{name + ': server CPU per call':<48} {stats['server_cpu'] / calls * 1000:>12.0f} ms/s")
    print(f"{name + ': forwarded frames':<48} {(video['received'] + audio['received']) / seconds:>12,.0f} /s"
          f"   ({video['received'] / seconds:,.0f} video + {audio['received'] / seconds:,.0f} audio)")
    if delay:
        print(f"{name + ': frames lost':<48} {lost:>12,d}      of {sent:,} sent"
              f" ({video['lost']} video, {audio['lost']} audio)")
        if video["delays"] and audio["delays"]:
            median = statistics.median(video["delays"]) * 1000
            print(f"{name + ': frame delay p99, video / audio':<48} {_p99(video['delays']) * 1000:>12.1f} ms"
                  f"   / {_p99(audio['delays']) * 1000:.1f} ms (video median {median:.1f} ms)")
        else:
            print(f"{name + ': frame delay':<48} {'n/a':>12}")
    else:
        print(f"{name + ': frames received of sent':<48} {video['received'] + audio['received']:>12,d}      of"
              f" {sent:,} (re-encoded: not matched)")
    print(f"{name + ': server RSS':<48} {stats['rss_mib']:>12.0f} MiB   (client process CPU"
          f" {stats['client_cpu'] * 100:.0f}% of a core; anything else on the machine"
          f" {stats.get('other_cpu', float('nan')) * 100:.0f}%)")
    per_process = stats.get("per_process_cpu", {})
    if len(per_process) > 1:
        shares = ", ".join(f"{process} {cpu * 100:.0f}%" for process, cpu in per_process.items())
        print(f"{name + ': CPU by process, % of a core':<48} {shares}")
    return lost / sent if sent else 1.0


def bench_calls(*, in_process: bool = True, workers: int = BENCH_WORKERS,
                worker_levels: tuple[int, ...] = WORKER_LEVELS, baseline: bool = True,
                profile: Path | None = None) -> None:
    """Passthrough forwarding in this process at 1, 2, 4, 8 concurrent calls; in `workers` media worker processes
    at `worker_levels` (the largest loss-free count is the node's TELEMED_MEDIA_MAX_CALLS); then aiortc's
    decode/re-encode at 1 and 2."""
    encoded = encode_sources()
    kbit = sum(len(v) for v in encoded.video) * 8 / LOOP_SECONDS / 1000
    print(f"{'call media: VP8 640x480 30 fps + Opus 20 ms, each way':<48} {kbit:>12,.0f} kbit/s video")
    _loopback_only()
    cpu_per_call: dict[int, float] = {}
    for calls in LEVELS if in_process else ():
        started = time.perf_counter()
        stats = _run_level(calls, encoded)
        if stats is None:
            print(f"{f'passthrough, {calls} calls':<48} {'not connected':>12}")
            break
        cpu_per_call[calls] = stats["server_cpu"] / calls
        loss = _report("passthrough", calls, stats, delay=True)
        if loss > MAX_LOSS or time.perf_counter() - started > MAX_LEVEL_SECONDS:
            print(f"{'(stopping: too slow or lossy)':<48}")
            break
    if workers and worker_levels:
        _bench_workers(encoded, workers, worker_levels, profile)
        with tempfile.TemporaryDirectory() as folder:  # the same calls, every one of them recorded
            _bench_workers(encoded, workers, worker_levels, None, record_root=Path(folder))
    for calls in BASELINE_LEVELS if baseline else ():
        stats = _run_level(calls, encoded, baseline=True)
        if stats is None:
            print(f"{f'decode/re-encode, {calls} calls':<48} {'not connected':>12}")
            break
        _report("decode/re-encode", calls, stats, delay=False)
        if calls in cpu_per_call:
            ratio = stats["server_cpu"] / calls / cpu_per_call[calls]
            print(f"{f'decode/re-encode / passthrough CPU, {calls} call(s)':<48} {ratio:>12.1f} x")


def _bench_workers(encoded: Encoded, workers: int, levels: tuple[int, ...], profile: Path | None,
                   record_root: Path | None = None) -> None:
    label = f"{workers} media workers" + (", recording" if record_root is not None else "")
    loss_free = 0
    for calls in levels:
        started = time.perf_counter()
        level_root = None if record_root is None else record_root / f"level-{calls}"
        stats = _run_level(calls, encoded, workers=workers, profile=profile, record_root=level_root)
        if stats is None:
            print(f"{f'{label}, {calls} calls':<48} {'not connected':>12}")
            break
        loss = _report(label, calls, stats, delay=True)
        if loss > 0 or time.perf_counter() - started > MAX_LEVEL_SECONDS + 15:
            print(f"{'(stopping: frames lost, or too slow)':<48}")
            break
        loss_free = calls
    print(f"{f'{label}: most concurrent calls without loss':<48} {loss_free:>12d}")


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.call`: the call benchmark alone, e.g. `--workers 2 --levels 12 --profile var/profile`."""
    parser = argparse.ArgumentParser(prog="python -m bench.call", description=main.__doc__)
    parser.add_argument("--workers", type=int, default=BENCH_WORKERS, help="media worker processes (0: none)")
    parser.add_argument("--levels", default=",".join(map(str, WORKER_LEVELS)), help="concurrent calls to try")
    parser.add_argument("--in-process", action="store_true", help="also the in-process series (1, 2, 4, 8)")
    parser.add_argument("--baseline", action="store_true", help="also aiortc's decode/re-encode relay")
    parser.add_argument("--profile", type=Path, help="py-spy each worker while measuring; raw stacks go here")
    parser.add_argument("--profile-all-threads", action="store_true",
                        help="sample every active thread, not only the one holding the GIL")
    args = parser.parse_args(argv)
    global PROFILE_GIL_ONLY
    PROFILE_GIL_ONLY = not args.profile_all_threads
    levels = tuple(int(level) for level in args.levels.split(",") if level.strip())
    bench_calls(in_process=args.in_process, workers=args.workers, worker_levels=levels, baseline=args.baseline,
                profile=args.profile)


if __name__ == "__main__":
    main()
