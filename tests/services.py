"""Real services for tests: a throw-away redis-server, and the project's own CLI run as a subprocess.

Everything listens on 127.0.0.1 and a free port, lives in a temporary folder, and is stopped at the end
of its `with` block; every wait is bounded and a failure says what the process wrote to stderr.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

LOCALHOST = "127.0.0.1"
# Cheap argon2 for subprocesses, as `make_settings` does in-process.
FAST_ARGON2 = {"TELEMED_ARGON2_MEMORY_KIB": "1024", "TELEMED_ARGON2_TIME_COST": "1",
               "TELEMED_ARGON2_PARALLELISM": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- redis-server ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}"

    @property
    def limits_url(self) -> str:
        """The form `limits` takes for its asyncio storage (TELEMED_RATE_LIMIT_STORAGE_URL)."""
        return f"async+redis://{LOCALHOST}:{self.port}"


def _redis_answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(*, timeout: float = 10.0) -> Iterator[RedisServer]:
    """Start redis-server on 127.0.0.1 and a free port, with no persistence, in a temporary folder."""
    binary = shutil.which("redis-server")
    if binary is None:
        # Fail, never skip: CI installs it (scripts/install-system-deps.sh), so absence is a broken setup.
        pytest.fail("redis-server is not installed; run `make sysdeps` (scripts/install-system-deps.sh)",
                    pytrace=False)
    with tempfile.TemporaryDirectory(prefix="telemed-redis-") as folder:
        port = free_port()
        log = Path(folder) / "redis.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", LOCALHOST, "--save", "", "--appendonly", "no",
                 "--dir", folder],
                stdout=output, stderr=subprocess.STDOUT, cwd=folder)
        try:
            if not wait_until(lambda: process.poll() is not None or _redis_answers_ping(port), timeout=timeout) \
                    or process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} did not answer PING within {timeout}s "
                                   f"(exit code {process.poll()}):\n{log.read_text(errors='replace')}")
            yield RedisServer(port, process)
        finally:
            stop(process, timeout=10)


# --- the project's CLI ----------------------------------------------------------------------------------


def server_env(**values: str | os.PathLike[str]) -> dict[str, str]:
    """This process's environment without any TELEMED_* setting, plus `values` (cheap argon2 by default)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TELEMED_")}
    env.update(FAST_ARGON2)
    env.update({name: os.fspath(value) for name, value in values.items()})
    return env


def run_cli(*args: str, env: Mapping[str, str], cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m server ARGS` to completion (bounded) and return its exit code and output.

    `cwd` should be a temporary folder: the settings read an optional `.env` from the working directory.
    """
    return subprocess.run([sys.executable, "-m", "server", *args], env=dict(env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


@dataclass
class ServerProcess:
    """A long-running `python -m server ...`, its output going to files so no pipe can fill up."""

    command: list[str]
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        """The process's state and output, for failure messages."""
        return (f"`{' '.join(self.command)}` (pid {self.pid}, exit code {self.process.poll()})\n"
                f"--- stdout ---\n{self.stdout()[-4000:]}\n--- stderr ---\n{self.stderr()[-8000:]}")

    def wait_for_output(self, text: str, *, timeout: float) -> None:
        """Wait until `text` appears in stdout or stderr; fail (with the output) if it does not, or it dies."""
        appeared = wait_until(lambda: self.process.poll() is not None or text in self.stdout() + self.stderr(),
                              timeout=timeout, interval=0.2)
        if not appeared or text not in self.stdout() + self.stderr():
            pytest.fail(f"{text!r} did not appear within {timeout}s: {self.describe()}", pytrace=False)

    def wait_for_http(self, url: str, *, timeout: float = 30.0) -> None:
        """Wait until `url` answers any HTTP status; fail with the process's stderr if it does not."""

        def answers() -> bool:
            if self.process.poll() is not None:
                return True
            return http_get(url, timeout=1.0)[0] != 0

        if not wait_until(answers, timeout=timeout, interval=0.1) or self.process.poll() is not None:
            pytest.fail(f"{url} did not answer within {timeout}s: {self.describe()}", pytrace=False)

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, timeout: float = 30.0) -> int:
        """Send `sig`, wait (bounded) and return the exit code; fail with the output if it hangs."""
        code = stop(self.process, sig, timeout=timeout)
        if code is None:
            pytest.fail(f"did not exit within {timeout}s of {sig.name}; killed: {self.describe()}", pytrace=False)
        return code


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """GET `url`; returns (status, body), status 0 when nothing answers. Only 127.0.0.1 URLs are used."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310  # http on 127.0.0.1
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


@contextmanager
def server_process(*args: str, env: Mapping[str, str], cwd: Path) -> Iterator[ServerProcess]:
    """Start `python -m server ARGS`; on leaving the block it is stopped (SIGTERM, then SIGKILL)."""
    stem = f"server-{time.monotonic_ns()}"  # several processes may share one folder
    stdout_path, stderr_path = cwd / f"{stem}.out", cwd / f"{stem}.err"
    with ExitStack() as stack:
        out = stack.enter_context(stdout_path.open("wb"))
        err = stack.enter_context(stderr_path.open("wb"))
        command = [sys.executable, "-m", "server", *args]
        process = subprocess.Popen(command, env=dict(env), cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        yield ServerProcess(command, process, stdout_path, stderr_path)
    finally:
        stop(process, timeout=30)


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, *, timeout: float) -> int | None:
    """Signal `process` and reap it; returns its exit code, or None if it had to be killed."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


# --- processes ------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name sits in parentheses and may hold spaces; the fields after it are plain.
    return raw[raw.rindex(")") + 2:].split()


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc, so no psutil is needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Children, grandchildren and so on of `pid`."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children(queue.pop())
        found.extend(kids)
        queue.extend(kids)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"
