"""Retention of recordings: crypto-erasure past the retention, legal hold, and master key rotation with re-wrap.

Recordings are made by the real pipeline from synthetic packets (tests.recording_helpers), finalised, and then
aged by moving their finalisation back in time.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from media.recording import encryption, retention, services
from media.recording.models import Recording, RecordingOutput, RecordingState
from server import keys
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.celery_app import celery_app
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_key_material, load_seal_keys, master_key_id
from tests.conftest import make_settings
from tests.factories import admin, create_staff
from tests.recording_helpers import write_recording
from tests.scheduling_helpers import booked_clinic
from tests.services import run_cli, server_env

DAYS = 1825  # the default retention


async def _record(app: Any, consultation_id: str, seconds: float = 5.0) -> str:
    """A finalised recording of the consultation, under the app's current master key."""
    config = app[keys.settings]
    async with transaction(app[keys.sessions]) as session:
        spec = await services.start(session, consultation_id=uuid.UUID(consultation_id),
                                    keys=app[keys.key_material], settings=config, now=utcnow())
    write_recording(services.storage_for(config), spec, seconds)
    async with transaction(app[keys.sessions]) as session:
        await services.stopped(session, recording_id=uuid.UUID(spec.recording_id), reason="ended", now=utcnow())
        await services.finalise_recording(session, recording_id=uuid.UUID(spec.recording_id),
                                          keys=app[keys.key_material], seal_keys=load_seal_keys(config),
                                          storage=services.storage_for(config), now=utcnow())
    return spec.recording_id


async def _age(app: Any, recording_id: str, days: float) -> None:
    """Move the recording's start and finalisation `days` into the past."""
    finalised = utcnow() - dt.timedelta(days=days)
    async with transaction(app[keys.sessions]) as session:
        await session.execute(update(Recording).where(Recording.id == uuid.UUID(recording_id)).values(
            finalised_at=finalised, started_at=finalised - dt.timedelta(minutes=30)))


async def _row(app: Any, recording_id: str) -> Recording:
    async with app[keys.read_sessions]() as session:
        recording = await session.get(Recording, uuid.UUID(recording_id))
    assert recording is not None
    return recording


async def _webm(app: Any, recording_id: str, data_key: bytes, participant: str = "physician") -> bytes:
    async with app[keys.read_sessions]() as session:
        output = (await session.scalars(select(RecordingOutput).where(
            RecordingOutput.recording_id == uuid.UUID(recording_id),
            RecordingOutput.participant == participant))).one()
    return encryption.open_sealed(services.storage_for(app[keys.settings]).get(output.storage_key), data_key)[1]


async def _audit(app: Any, action: str) -> list[AuditEntry]:
    async with app[keys.read_sessions]() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                           .order_by(AuditEntry.seq))).all())


async def _play(client: Any, account: Any, recording_id: str) -> tuple[int, bytes]:
    response = await client.get(f"/api/v1/recordings/{recording_id}/media?participant=physician",
                                headers=account.auth)
    return response.status, await response.read()


def _media_dir(app: Any, recording_id: str) -> list[str]:
    return services.storage_for(app[keys.settings]).list(recording_id)


def _cli(tmp_path: Path, database_url: str, *args: str, **env: str) -> Any:
    """`python -m server ARGS` on the test's data folder and database, as an operator runs it."""
    values = {"TELEMED_ENV": "development", "TELEMED_DATA_DIR": str(tmp_path / "var"),
              "TELEMED_DATABASE_URL": database_url, **env}
    return run_cli(*args, env=server_env(**values), cwd=tmp_path)


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    return await booked_clinic(aiohttp_client, tmp_path, database_url)


async def test_purge_erases_an_expired_recording_and_keeps_held_and_fresh_ones(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    app = client.app
    old, held, fresh = [await _record(app, clinic["consultation"]) for _ in range(3)]
    await _age(app, old, DAYS + 1)
    await _age(app, held, DAYS + 1)
    boss = await admin(client)
    hold = await client.put(f"/api/v1/recordings/{held}/legal-hold", headers=boss.auth,
                            json={"hold": True, "reason": "court order 2-117/2031"})
    assert hold.status == 200, await hold.text()
    assert (await _play(client, doctor, old))[0] == 200

    config = app[keys.settings]
    async with transaction(app[keys.sessions]) as session:
        erased = await retention.purge_expired(session, storage=services.storage_for(config), settings=config,
                                               now=utcnow())
    assert erased == [uuid.UUID(old)]

    gone = await _row(app, old)
    assert gone.wrapped_key is None  # the data key is destroyed: whatever is left of the files is noise
    assert gone.state is RecordingState.erased
    assert gone.erased_at is not None
    assert _media_dir(app, old) == []
    assert (await _play(client, doctor, old))[0] == 404
    shown = await client.get(f"/api/v1/recordings/{old}", headers=doctor.auth)
    assert (await shown.json())["state"] == "erased"
    [entry] = await _audit(app, "recording.erased")
    assert (entry.object_id, entry.actor_role) == (old, "system")
    assert entry.detail == {"reason": "retention", "days": DAYS}
    assert str(entry.subject_patient_id) == clinic["patient"].patient_id  # the patient sees it in their log

    for kept in (held, fresh):
        row = await _row(app, kept)
        assert (row.state, row.wrapped_key is not None) == (RecordingState.complete, True)
        assert _media_dir(app, kept)
        assert (await _play(client, doctor, kept))[0] == 200

    async with transaction(app[keys.sessions]) as session:  # idempotent: nothing more to erase
        assert await retention.purge_expired(session, storage=services.storage_for(config), settings=config,
                                             now=utcnow()) == []


async def test_legal_hold_is_for_admins_audited_and_needs_a_reason(clinic: dict[str, Any]) -> None:
    client, doctor, patient = clinic["client"], clinic["doctor"], clinic["patient"]
    app = client.app
    recording = await _record(app, clinic["consultation"])
    url = f"/api/v1/recordings/{recording}/legal-hold"
    body = {"hold": True, "reason": "complaint 44"}
    for account in (doctor, patient, await create_staff(client, Role.qa_expert)):
        refused = await client.put(url, headers=account.auth, json=body)
        assert refused.status == 403, account.role
        assert (await refused.json())["code"] == "role_forbidden"
    boss = await admin(client)
    for bad in ({"hold": True}, {"hold": True, "reason": "  x "}, {"hold": True, "reason": "r" * 201}):
        invalid = await client.put(url, headers=boss.auth, json=bad)
        assert invalid.status == 422, bad
        assert [e["field"] for e in (await invalid.json())["errors"]] == ["reason"]
    unknown = await client.put(f"/api/v1/recordings/{uuid.uuid4()}/legal-hold", headers=boss.auth, json=body)
    assert unknown.status == 404
    assert await _audit(app, "recording.legal_hold_set") == []  # nothing refused was recorded as done

    held = await client.put(url, headers=boss.auth, json=body)
    assert held.status == 200
    assert await held.json() == {"id": recording, "state": "complete", "legal_hold": True}
    assert (await _row(app, recording)).legal_hold is True
    released = await client.put(url, headers=boss.auth, json={"hold": False, "reason": "case closed"})
    assert (await released.json())["legal_hold"] is False
    [set_entry] = await _audit(app, "recording.legal_hold_set")
    [released_entry] = await _audit(app, "recording.legal_hold_released")
    assert (set_entry.actor_role, set_entry.actor_user_id, set_entry.object_id) == ("admin", uuid.UUID(boss.user_id),
                                                                                    recording)
    assert set_entry.detail == {"reason": "complaint 44", "changed": True}
    assert released_entry.detail == {"reason": "case closed", "changed": True}

    await _age(app, recording, DAYS + 1)  # released: retention applies again
    config = app[keys.settings]
    async with transaction(app[keys.sessions]) as session:
        assert await retention.purge_expired(session, storage=services.storage_for(config), settings=config,
                                             now=utcnow()) == [uuid.UUID(recording)]
    too_late = await client.put(url, headers=boss.auth, json=body)
    assert too_late.status == 409
    assert (await too_late.json())["code"] == "recording_erased"


async def test_cli_purge_dry_run_lists_then_purge_erases(clinic: dict[str, Any], tmp_path: Path,
                                                         database_url: str) -> None:
    app = clinic["client"].app
    old = await _record(app, clinic["consultation"])
    fresh = await _record(app, clinic["consultation"])
    await _age(app, old, DAYS + 1)

    dry = await asyncio.to_thread(_cli, tmp_path, database_url, "recordings", "purge", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would erase {old} (complete" in dry.stdout
    assert fresh not in dry.stdout
    assert "1 recordings would be erased" in dry.stdout
    assert (await _row(app, old)).state is RecordingState.complete  # a dry run changes nothing
    assert await _audit(app, "recording.erased") == []

    done = await asyncio.to_thread(_cli, tmp_path, database_url, "recordings", "purge")
    assert done.returncode == 0, done.stderr
    assert f"erased {old}" in done.stdout
    assert "1 recordings erased (retention 1825 days)" in done.stdout
    assert (await _row(app, old)).state is RecordingState.erased
    assert (await _row(app, fresh)).state is RecordingState.complete
    assert _media_dir(app, old) == []
    [entry] = await _audit(app, "recording.erased")
    assert entry.actor_role == "cli"

    kept_forever = await asyncio.to_thread(_cli, tmp_path, database_url, "recordings", "purge",
                                           TELEMED_RETENTION_RECORDING_DAYS="0")
    assert "kept forever" in kept_forever.stdout


async def test_rotation_previous_key_plays_rewrap_moves_it_then_the_old_key_can_go(
        clinic: dict[str, Any], aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    app, doctor = clinic["client"].app, clinic["doctor"]
    recording = await _record(app, clinic["consultation"])
    key_a = (tmp_path / "var" / "keys" / "master.key").read_text().strip()  # generated on first run
    key_b = base64.b64encode(secrets.token_bytes(32)).decode()
    id_a, id_b = (master_key_id(base64.b64decode(key)) for key in (key_a, key_b))
    assert (await _row(app, recording)).key_id == id_a
    data_key = services.data_key_of(await _row(app, recording), app[keys.key_material])
    webm = await _webm(app, recording, data_key)

    def settings_with(**values: Any) -> Any:
        return make_settings(tmp_path, database_url, checkin_opens_minutes=60, join_opens_minutes=60, **values)

    rotated = await aiohttp_client(create_app(settings_with(master_key=key_b, master_previous_keys=[key_a])))
    assert await _play(rotated, doctor, recording) == (200, webm)
    with pytest.raises(encryption.Tampered):  # without the previous key it would not open
        services.data_key_of(await _row(app, recording), load_key_material(settings_with(master_key=key_b)))

    unconfigured = await asyncio.to_thread(_cli, tmp_path, database_url, "recordings", "rewrap",
                                           TELEMED_MASTER_KEY=key_b)
    assert unconfigured.returncode == 1
    assert f"wrapped under master key {id_a}, which is not configured" in unconfigured.stderr
    assert (await _row(app, recording)).key_id == id_a  # left as it was

    env = {"TELEMED_MASTER_KEY": key_b, "TELEMED_MASTER_PREVIOUS_KEYS": json.dumps([key_a])}
    first = await asyncio.to_thread(_cli, tmp_path, database_url, "recordings", "rewrap", **env)
    assert first.returncode == 0, first.stderr
    assert f"1 recordings re-wrapped under master key {id_b}; 0 were under it already" in first.stdout
    again = await asyncio.to_thread(_cli, tmp_path, database_url, "recordings", "rewrap", **env)
    assert "0 recordings re-wrapped" in again.stdout
    assert "1 were under it already" in again.stdout
    assert (await _row(app, recording)).key_id == id_b
    assert await _play(rotated, doctor, recording) == (200, webm)
    [entry] = await _audit(app, "recording.rewrapped")
    assert (entry.object_id, entry.actor_role) == (recording, "cli")
    assert entry.detail == {"from_key_id": id_a, "to_key_id": id_b}

    only_b = await aiohttp_client(create_app(settings_with(master_key=key_b)))  # key A removed
    assert await _play(only_b, doctor, recording) == (200, webm)


def test_purge_runs_daily_from_celery_beat() -> None:
    schedule = {entry["task"]: entry["schedule"] for entry in celery_app.conf.beat_schedule.values()}
    assert "media.recording.tasks.purge_recordings" in schedule
    assert schedule["media.recording.tasks.purge_recordings"].remaining_estimate(utcnow()) <= dt.timedelta(days=1)
    import media.recording.tasks  # noqa: F401  (registers the task, as the worker's `include` does)

    assert "media.recording.tasks.purge_recordings" in celery_app.tasks
