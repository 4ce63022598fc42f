"""`python -m server serve` as an operator runs it: it answers health checks, and Ctrl-C stops it and its worker."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests import databases
from tests.services import (
    ServerProcess,
    alive,
    descendants,
    free_port,
    http_get,
    server_env,
    server_process,
    wait_until,
)


def _serve(tmp_path: Path, database_url: str, *extra: str) -> tuple[str, AbstractContextManager[ServerProcess]]:
    """The base URL and the `serve` process (started on entering the block) on a free port."""
    port = free_port()
    env = server_env(TELEMED_ENV="test", TELEMED_DATA_DIR=tmp_path / "var", TELEMED_DATABASE_URL=database_url,
                     TELEMED_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'var' / 'broker.sqlite3'}",
                     TELEMED_LOG_LEVEL="INFO")
    return f"http://127.0.0.1:{port}", server_process("serve", "--port", str(port), *extra, env=env, cwd=tmp_path)


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database that exists but was never migrated."""
    url = databases.empty_database(tmp_path / "empty")
    yield url
    databases.drop(url)


def test_serve_answers_health_and_readiness(tmp_path: Path, database_url: str) -> None:
    base, running = _serve(tmp_path, database_url, "--no-worker")
    with running as server:
        server.wait_for_http(f"{base}/healthz")
        assert http_get(f"{base}/healthz") == (200, json.dumps({"status": "ok"}))
        status, body = http_get(f"{base}/readyz")
        assert status == 200, body
        assert json.loads(body)["status"] == "ready"
        assert server.stop(signal.SIGINT, timeout=30) == 0, server.describe()


def test_serve_readiness_is_503_before_migration(tmp_path: Path, empty_database_url: str) -> None:
    base, running = _serve(tmp_path, empty_database_url, "--no-worker")
    with running as server:
        server.wait_for_http(f"{base}/healthz")
        assert http_get(f"{base}/healthz")[0] == 200  # alive, but not ready
        status, body = http_get(f"{base}/readyz")
        assert status == 503, body
        assert json.loads(body)["status"] == 503
        assert json.loads(body)["code"] == "schema_outdated"  # reachable, but `db upgrade` never ran
        assert server.stop(signal.SIGINT, timeout=30) == 0, server.describe()


@pytest.mark.slow
def test_serve_ctrl_c_stops_server_and_worker(tmp_path: Path, database_url: str) -> None:
    base, running = _serve(tmp_path, database_url)
    with running as server:
        server.wait_for_http(f"{base}/healthz")
        assert http_get(f"{base}/readyz")[0] == 200
        server.wait_for_output(" ready.", timeout=30)  # the worker (it logs to the same stderr) is up
        workers = descendants(server.pid)
        assert workers, f"serve started no worker: {server.describe()}"
        assert server.stop(signal.SIGINT, timeout=30) == 0, server.describe()
        assert wait_until(lambda: not any(alive(pid) for pid in workers), timeout=5), \
            f"left running: {[pid for pid in workers if alive(pid)]}; {server.describe()}"
        assert "Warm shutdown" in server.stdout() + server.stderr()
        assert http_get(f"{base}/healthz", timeout=1)[0] == 0
