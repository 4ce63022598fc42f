"""Playback of a finalised recording over the API: who may, byte ranges for seeking, and the audit trail."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from consent.seal import SealProblem
from media.recording import encryption, services
from media.recording.models import Recording, RecordingOutput, RecordingState
from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_seal_keys
from tests.factories import admin, create_staff, register_patient
from tests.recording_helpers import write_recording
from tests.scheduling_helpers import booked_clinic


async def recorded_clinic(aiohttp_client: Any, tmp_path: Path, database_url: str, **settings: Any) -> dict[str, Any]:
    """A booked consultation with a finalised 25-second recording (synthetic packets, the real pipeline)."""
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, **settings)
    app = clinic["client"].app
    config = app[keys.settings]
    async with transaction(app[keys.sessions]) as session:
        spec = await services.start(session, consultation_id=uuid.UUID(clinic["consultation"]),
                                    keys=app[keys.key_material], settings=config, now=utcnow())
    write_recording(services.storage_for(config), spec, 25.0)
    async with transaction(app[keys.sessions]) as session:
        await services.stopped(session, recording_id=uuid.UUID(spec.recording_id), reason="ended", now=utcnow())
        await services.finalise_recording(session, recording_id=uuid.UUID(spec.recording_id),
                                          keys=app[keys.key_material], seal_keys=load_seal_keys(config),
                                          storage=services.storage_for(config), now=utcnow())
    clinic["recording"] = spec.recording_id
    clinic["data_key"] = spec.data_key
    return clinic


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    return await recorded_clinic(aiohttp_client, tmp_path, database_url)


async def _webm(clinic: dict[str, Any], participant: str) -> bytes:
    app = clinic["client"].app
    async with app[keys.read_sessions]() as session:
        output = (await session.scalars(select(RecordingOutput).where(
            RecordingOutput.recording_id == uuid.UUID(clinic["recording"]),
            RecordingOutput.participant == participant))).one()
    sealed = services.storage_for(app[keys.settings]).get(output.storage_key)
    return encryption.open_sealed(sealed, clinic["data_key"])[1]


async def test_the_physician_sees_the_consultations_recordings_with_state_gaps_and_hashes(
        clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    listed = await client.get(f"/api/v1/consultations/{clinic['consultation']}/recordings", headers=doctor.auth)
    assert listed.status == 200, await listed.text()
    [item] = (await listed.json())["items"]
    assert item["id"] == clinic["recording"]
    assert item["state"] == "complete"
    assert item["manifest_sealed"] is True
    assert {p["participant"] for p in item["participants"]} == {"physician", "patient"}
    assert all(len(p["sha256"]) == 64 and p["media_size"] > 0 for p in item["participants"])
    one = await client.get(f"/api/v1/recordings/{clinic['recording']}", headers=doctor.auth)
    assert (await one.json())["duration_ms"] == item["duration_ms"]


async def test_playback_serves_the_whole_file_and_any_single_range(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    webm = await _webm(clinic, "physician")
    url = f"/api/v1/recordings/{clinic['recording']}/media?participant=physician"
    size = len(webm)
    assert size > 3 * encryption.CHUNK_BYTES  # ranges cross chunk boundaries

    whole = await client.get(url, headers=doctor.auth)
    assert whole.status == 200
    listed = await (await client.get(f"/api/v1/recordings/{clinic['recording']}", headers=doctor.auth)).json()
    physician = next(p for p in listed["participants"] if p["participant"] == "physician")
    assert physician["media_sha256"] == hashlib.sha256(webm).hexdigest()
    assert physician["media_size"] == size
    assert whole.headers["Content-Type"] == "video/webm"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert await whole.read() == webm

    for header, first, last in (("bytes=0-99", 0, 99),  # the start
                                (f"bytes={encryption.CHUNK_BYTES - 10}-{2 * encryption.CHUNK_BYTES + 9}",
                                 encryption.CHUNK_BYTES - 10, 2 * encryption.CHUNK_BYTES + 9),  # the middle
                                (f"bytes={size - 1000}-", size - 1000, size - 1),  # open-ended
                                ("bytes=-500", size - 500, size - 1)):  # the suffix
        part = await client.get(url, headers={**doctor.auth, "Range": header})
        assert part.status == 206, header
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert await part.read() == webm[first:last + 1]

    for bad in ("bytes=abc", f"bytes={size}-", "bytes=0-1,5-9", "bytes=9-3", "pages=1-2", "bytes=-0"):
        refused = await client.get(url, headers={**doctor.auth, "Range": bad})
        assert refused.status == 416, bad
        assert refused.headers["Content-Range"] == f"bytes */{size}"
        assert (await refused.json())["code"] == "range_not_satisfiable"


async def test_nobody_else_plays_it_and_an_admin_must_say_why(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    url = f"/api/v1/recordings/{clinic['recording']}/media?participant=patient"
    stranger = await register_patient(client, full_name="Чужой Пациент")
    other_doctor = await create_staff(client, Role.physician)
    expert = await create_staff(client, Role.qa_expert)  # no review of this consultation assigned to them
    for account in (stranger, other_doctor, expert, clinic["patient"]):  # the patient: the clinic does not allow it
        for path in (url, f"/api/v1/recordings/{clinic['recording']}",
                     f"/api/v1/consultations/{clinic['consultation']}/recordings"):
            response = await client.get(path, headers=account.auth)
            assert response.status == 404, (account.role, path)

    boss = await admin(client)
    unexplained = await client.get(url, headers=boss.auth)
    assert unexplained.status == 422
    assert [e["field"] for e in (await unexplained.json())["errors"]] == ["reason"]
    explained = await client.get(f"{url}&reason=patient%20complaint%2012", headers=boss.auth)
    assert explained.status == 200
    assert await explained.read() == await _webm(clinic, "patient")
    missing = await client.get(f"/api/v1/recordings/{uuid.uuid4()}/media?participant=patient", headers=boss.auth)
    assert missing.status == 404
    bad = await client.get(f"/api/v1/recordings/{clinic['recording']}/media?participant=nurse", headers=boss.auth)
    assert bad.status == 422


async def test_every_playback_is_in_the_audit_log_with_the_bytes_served(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    url = f"/api/v1/recordings/{clinic['recording']}/media?participant=patient"
    await (await client.get(url, headers={**doctor.auth, "Range": "bytes=100-199"})).read()
    boss = await admin(client)
    await (await client.get(f"{url}&reason=quality%20check", headers=boss.auth)).read()
    async with client.app[keys.read_sessions]() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.played")
                                      .order_by(AuditEntry.seq))).all()
    assert [(r.actor_role, r.object_id) for r in rows] == [("physician", clinic["recording"]),
                                                           ("admin", clinic["recording"])]
    assert rows[0].detail == {"participant": "patient", "ranges": ["100-199"]}
    assert rows[1].detail["reason"] == "quality check"
    assert all(str(r.subject_patient_id) == clinic["patient"].patient_id for r in rows)


async def test_a_patient_may_replay_their_own_consultation_when_the_clinic_allows(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url, recording_patient_playback=True)
    client = clinic["client"]
    url = f"/api/v1/recordings/{clinic['recording']}/media?participant=physician"
    own = await client.get(url, headers=clinic["patient"].auth)
    assert own.status == 200
    assert await own.read() == await _webm(clinic, "physician")
    stranger = await register_patient(client, full_name="Другой Пациент")
    assert (await client.get(url, headers=stranger.auth)).status == 404


async def test_the_sealed_manifest_verifies_and_a_changed_one_does_not(clinic: dict[str, Any]) -> None:
    app = clinic["client"].app
    seal_keys = load_seal_keys(app[keys.settings])
    async with app[keys.read_sessions]() as session:
        recording = await session.get(Recording, uuid.UUID(clinic["recording"]))
        assert recording is not None
        assert recording.state is RecordingState.complete
        services.check_manifest(recording, seal_keys)
        recording.manifest = (recording.manifest or "").replace('"complete"', '"partial"')
        with pytest.raises(SealProblem):
            services.check_manifest(recording, seal_keys)


async def _without_end_marker(aiohttp_client: Any, tmp_path: Path, database_url: str, reason: str,
                              ) -> tuple[dict[str, Any], str]:
    """A recording whose segments were left as a dead recorder leaves them, stopped with `reason`."""
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    app = clinic["client"].app
    async with transaction(app[keys.sessions]) as session:
        spec = await services.start(session, consultation_id=uuid.UUID(clinic["consultation"]),
                                    keys=app[keys.key_material], settings=app[keys.settings], now=utcnow())
    write_recording(services.storage_for(app[keys.settings]), spec, 25.0, stop=False)
    async with transaction(app[keys.sessions]) as session:
        await services.stopped(session, recording_id=uuid.UUID(spec.recording_id), reason=reason, now=utcnow())
    return clinic, spec.recording_id


async def _finalise_at(clinic: dict[str, Any], recording_id: str, delay: float) -> Any:
    app = clinic["client"].app
    async with transaction(app[keys.sessions]) as session:
        return await services.finalise_recording(
            session, recording_id=uuid.UUID(recording_id), keys=app[keys.key_material],
            seal_keys=load_seal_keys(app[keys.settings]), storage=services.storage_for(app[keys.settings]),
            now=utcnow() + dt.timedelta(seconds=delay))


async def test_without_its_end_marker_a_recording_waits_then_a_clean_stop_is_damaged(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic, recording_id = await _without_end_marker(aiohttp_client, tmp_path, database_url, "ended")
    with pytest.raises(services.NotReady):  # a media worker may still be flushing: the task is retried
        await _finalise_at(clinic, recording_id, 1)
    result = await _finalise_at(clinic, recording_id, 60)
    assert result.state == "damaged"
    assert "the end marker is missing though the recording was stopped cleanly" in result.problems


async def test_without_its_end_marker_a_recording_whose_node_died_is_partial(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic, recording_id = await _without_end_marker(aiohttp_client, tmp_path, database_url, "node_restarted")
    result = await _finalise_at(clinic, recording_id, 60)
    assert result.state == "partial", result.problems


async def test_a_participant_file_swapped_for_another_is_not_played(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    media = client.app[keys.settings].resolved_recordings_dir / clinic["recording"] / "media"
    (media / "physician.webm").write_bytes((media / "patient.webm").read_bytes())
    refused = await client.get(f"/api/v1/recordings/{clinic['recording']}/media?participant=physician",
                               headers=doctor.auth)
    assert refused.status == 409
    assert (await refused.json())["code"] == "recording_damaged"
