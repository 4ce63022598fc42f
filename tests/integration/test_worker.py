"""A real Celery worker process on the SQLite broker: it runs the audit checkpoint task and stops on SIGTERM."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import services as audit
from server.audit.checkpoints import Checkpoint, load_checkpoints
from server.audit.models import AuditEntry
from server.celery_app import create_celery
from server.db.runner import run_in_session
from server.keyring import load_audit_key, load_key_material
from server.settings import Settings
from tests.conftest import make_settings
from tests.services import ServerProcess, alive, descendants, server_env, server_process, wait_until

pytestmark = pytest.mark.slow

CHECKPOINT_TASK = "server.audit.tasks.write_audit_checkpoint"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    settings = make_settings(tmp_path, database_url, audit_checkpoint_interval_seconds=5)
    # Create the keys here, before any worker task can race to generate them.
    load_key_material(settings)
    load_audit_key(settings)
    return settings


def _add_audit_entry(settings: Settings) -> int:
    """Append one entry to the audit chain; returns its sequence number."""

    async def work(session: AsyncSession, _settings: Settings) -> int:
        await audit.record(session, ctx=audit.SYSTEM, action="test.worker", object_type="test")
        return int(await session.scalar(select(func.max(AuditEntry.seq))) or 0)

    return run_in_session(work, settings)


def _worker_env(settings: Settings) -> dict[str, str]:
    return server_env(TELEMED_ENV="test", TELEMED_DATA_DIR=settings.data_dir,
                      TELEMED_DATABASE_URL=settings.resolved_database_url,
                      TELEMED_BROKER_URL=settings.resolved_broker_url,
                      TELEMED_AUDIT_CHECKPOINT_INTERVAL_SECONDS=str(settings.audit_checkpoint_interval_seconds))


@pytest.fixture
def worker_args() -> list[str]:
    return ["worker", "--no-beat"]


@pytest.fixture
def worker(settings: Settings, worker_args: list[str], tmp_path: Path) -> Iterator[ServerProcess]:
    """A worker that has connected to the broker; afterwards it must stop cleanly on SIGTERM."""
    with server_process(*worker_args, env=_worker_env(settings), cwd=tmp_path) as process:
        process.wait_for_output(" ready.", timeout=30)
        yield process
        helpers = descendants(process.pid)  # the embedded beat, when there is one
        assert process.stop(signal.SIGTERM, timeout=30) == 0, process.describe()
        assert not [pid for pid in helpers if alive(pid)], process.describe()


def _wait_for_checkpoint(settings: Settings, seq: int, worker: ServerProcess, *, timeout: float) -> Checkpoint:
    """The signed checkpoint for `seq`, once the worker has written it, checked against the audit public key."""
    path = settings.checkpoints_dir / f"{seq:012d}.json"
    if not wait_until(path.exists, timeout=timeout, interval=0.2):
        pytest.fail(f"no checkpoint {path.name} within {timeout}s: {worker.describe()}", pytrace=False)
    loaded = {item.path.name: item for item in
              load_checkpoints(settings.checkpoints_dir, load_audit_key(settings).public_key())}
    checkpoint = loaded[path.name].checkpoint
    assert checkpoint is not None, loaded[path.name].problem
    assert checkpoint.seq == seq
    return checkpoint


def test_worker_runs_sent_checkpoint_task(settings: Settings, worker: ServerProcess) -> None:
    entries = _add_audit_entry(settings)
    celery = create_celery(settings)
    try:
        celery.send_task(CHECKPOINT_TASK)
    finally:
        celery.close()
    checkpoint = _wait_for_checkpoint(settings, entries, worker, timeout=60)
    body = json.loads((settings.checkpoints_dir / f"{entries:012d}.json").read_text())
    assert body["hash"] == checkpoint.hash
    assert f"{CHECKPOINT_TASK}[" in worker.stderr()


@pytest.mark.parametrize("worker_args", [["worker"]], ids=["beat"])
def test_worker_with_beat_writes_checkpoints_periodically(settings: Settings, worker: ServerProcess) -> None:
    first = _add_audit_entry(settings)
    _wait_for_checkpoint(settings, first, worker, timeout=30)
    # A new entry after the first checkpoint: the next scheduled run signs the new tip, unprompted.
    second = _add_audit_entry(settings)
    assert second == first + 1
    _wait_for_checkpoint(settings, second, worker, timeout=30)
