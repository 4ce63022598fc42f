"""The audit chain: intact chains verify; edits, deletions, swaps and rewrites are found and named."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, func, select, text, update

from server import keys
from server.audit import services
from server.audit.models import AuditEntry, AuditHead
from server.audit.services import AuditContext
from server.db.engine import transaction
from server.keyring import load_audit_key
from server.settings import Settings
from tests.factories import admin, register_patient


async def _verify(app: web.Application, settings: Settings) -> services.VerifyReport:
    async with transaction(app[keys.sessions]) as session:
        return await services.verify(session, checkpoints_dir=settings.checkpoints_dir,
                                     public_key=load_audit_key(settings).public_key())


async def _append(app: web.Application, count: int) -> None:
    async with transaction(app[keys.sessions]) as session:
        for index in range(count):
            await services.record(session, ctx=AuditContext(actor_role="test"), action=f"test.event{index}",
                                  object_type="thing", object_id=str(index))


@pytest.fixture
async def chain(client: TestClient, app: web.Application) -> web.Application:
    await _append(app, 6)
    return app


async def test_audit_intact_chain_verifies(chain: web.Application, settings: Settings) -> None:
    report = await _verify(chain, settings)
    assert report.ok, report.summary()
    assert report.entries == 6


async def test_audit_edited_field_is_named(chain: web.Application, settings: Settings) -> None:
    async with transaction(chain[keys.sessions]) as session:
        await session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(outcome="failure"))
    report = await _verify(chain, settings)
    assert not report.ok
    assert report.broken_seq == 3
    assert "contents" in (report.reason or "")


async def test_audit_edit_with_recomputed_hash_breaks_the_next_link(chain: web.Application,
                                                                    settings: Settings) -> None:
    """An editor who recomputes the row's own hash still breaks its successor's `prev_hash`."""
    from server.audit.rules import HASHED_FIELDS, entry_hash

    async with transaction(chain[keys.sessions]) as session:
        row = (await session.execute(select(*[getattr(AuditEntry, f) for f in HASHED_FIELDS])
                                     .where(AuditEntry.seq == 2))).mappings().one()
        forged = {**row, "action": "nothing.happened"}
        await session.execute(update(AuditEntry).where(AuditEntry.seq == 2)
                              .values(action="nothing.happened", hash=entry_hash(forged)))
    report = await _verify(chain, settings)
    assert (report.ok, report.broken_seq) == (False, 3)


async def test_audit_deleted_row_is_named(chain: web.Application, settings: Settings) -> None:
    async with transaction(chain[keys.sessions]) as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 4))
    report = await _verify(chain, settings)
    assert (report.ok, report.broken_seq) == (False, 4)
    assert "missing" in (report.reason or "")


async def test_audit_deleted_tail_is_found(chain: web.Application, settings: Settings) -> None:
    async with transaction(chain[keys.sessions]) as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq >= 5))
    report = await _verify(chain, settings)
    assert (report.ok, report.broken_seq) == (False, 5)


async def test_audit_swapped_rows_are_named(chain: web.Application, settings: Settings) -> None:
    """Swap the contents of entries 2 and 3 (keeping their sequence numbers)."""
    columns = [c.name for c in AuditEntry.__table__.columns if c.name != "seq"]
    async with transaction(chain[keys.sessions]) as session:
        rows = {r.seq: r for r in (await session.execute(select(AuditEntry.__table__)
                                                         .where(AuditEntry.seq.in_([2, 3])))).all()}
        for target, source in ((2, 3), (3, 2)):
            await session.execute(update(AuditEntry.__table__).where(AuditEntry.seq == target)
                                  .values({c: getattr(rows[source], c) for c in columns}))
    report = await _verify(chain, settings)
    assert (report.ok, report.broken_seq) == (False, 2)


async def test_audit_rewritten_chain_is_caught_by_signed_checkpoint(chain: web.Application,
                                                                    settings: Settings) -> None:
    """Someone with database access rewrites entries 3.. consistently; the checkpoint at 6 disagrees."""
    from server.audit.rules import HASHED_FIELDS, entry_hash

    async with transaction(chain[keys.sessions]) as session:
        assert await services.write_checkpoint(session, folder=settings.checkpoints_dir,
                                               key=load_audit_key(settings)) is not None
    async with transaction(chain[keys.sessions]) as session:
        rows = (await session.execute(select(*[getattr(AuditEntry, f) for f in HASHED_FIELDS], AuditEntry.hash)
                                      .order_by(AuditEntry.seq))).mappings().all()
        prev = rows[1]["hash"]
        for row in rows[2:]:
            forged = {**row, "prev_hash": prev, "action": "rewritten"}
            forged_hash = entry_hash(forged)
            await session.execute(update(AuditEntry).where(AuditEntry.seq == row["seq"])
                                  .values(action="rewritten", prev_hash=prev, hash=forged_hash))
            prev = forged_hash
        await session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    report = await _verify(chain, settings)
    assert (report.ok, report.broken_seq) == (False, 6)
    assert "checkpoint" in (report.reason or "")


async def test_audit_forged_checkpoint_file_is_reported(chain: web.Application, settings: Settings) -> None:
    async with transaction(chain[keys.sessions]) as session:
        path = await services.write_checkpoint(session, folder=settings.checkpoints_dir,
                                               key=load_audit_key(settings))
    assert isinstance(path, Path)
    path.write_text(path.read_text().replace('"seq": 6', '"seq": 5'))
    report = await _verify(chain, settings)
    assert not report.ok
    assert report.problems
    assert "wrongly signed" in report.problems[0]


async def test_audit_concurrent_appends_stay_one_chain(chain: web.Application, settings: Settings) -> None:
    await asyncio.gather(*[_append(chain, 5) for _ in range(8)])
    report = await _verify(chain, settings)
    assert report.ok, report.summary()
    assert report.entries == 6 + 40


async def test_audit_entry_written_with_the_change_or_not_at_all(client: TestClient, app: web.Application) -> None:
    """A failed transaction leaves neither the change nor its audit entry."""
    async with app[keys.sessions]() as session:
        before = await session.scalar(select(func.count()).select_from(AuditEntry))
    async def failing_change() -> None:
        async with transaction(app[keys.sessions]) as session:
            await services.record(session, ctx=AuditContext(actor_role="test"), action="x", object_type="y")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    async with app[keys.sessions]() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == before
        assert await session.scalar(select(AuditHead.seq)) == before


async def test_audit_patient_sees_who_read_their_data(client: TestClient, app: web.Application) -> None:
    patient = await register_patient(client)
    boss = await admin(client)
    read = await client.get(f"/api/v1/patients/{patient.patient_id}", headers=boss.auth)
    assert read.status == 200
    log = await client.get("/api/v1/me/access-log", headers=patient.auth)
    assert log.status == 200
    items = (await log.json())["items"]
    assert items[0]["action"] == "patient.read"
    assert items[0]["actor_name"] == "Staff admin"
    assert items[0]["by_you"] is False
    assert items[-1]["action"] == "account.register"
    assert items[-1]["by_you"] is True


async def test_audit_access_log_pages_with_cursor(client: TestClient, app: web.Application) -> None:
    patient = await register_patient(client)
    boss = await admin(client)
    for _ in range(3):
        await client.get(f"/api/v1/patients/{patient.patient_id}", headers=boss.auth)
    first = await (await client.get("/api/v1/me/access-log?limit=2", headers=patient.auth)).json()
    assert len(first["items"]) == 2
    second = await (await client.get(f"/api/v1/me/access-log?limit=2&before={first['next_before']}",
                                     headers=patient.auth)).json()
    assert len(second["items"]) == 2  # the third read and the registration
    assert second["next_before"] is not None
    bad = await client.get("/api/v1/me/access-log?limit=0", headers=patient.auth)
    assert bad.status == 422


async def test_audit_stores_no_address_in_clear(client: TestClient, app: web.Application) -> None:
    await register_patient(client)
    async with app[keys.sessions]() as session:
        rows = (await session.execute(text("SELECT ip_hash FROM audit_entries WHERE ip_hash IS NOT NULL"))).all()
    assert rows
    assert all("127.0.0.1" not in row[0] and len(row[0]) == 32 for row in rows)


async def test_audit_verify_is_not_fooled_by_live_appends(chain: web.Application, settings: Settings) -> None:
    """Verification while the clinic keeps working: new entries are not mistaken for a cut tail."""
    writing = True

    async def clinic_at_work() -> None:
        while writing:
            await _append(chain, 1)
            await asyncio.sleep(0)

    writer = asyncio.create_task(clinic_at_work())
    try:
        reports = []
        for _ in range(5):
            async with chain[keys.read_sessions]() as session:
                reports.append(await services.verify(session, checkpoints_dir=settings.checkpoints_dir,
                                                     public_key=load_audit_key(settings).public_key()))
    finally:
        writing = False
        await writer
    assert all(report.ok for report in reports), [r.summary() for r in reports if not r.ok]
    assert reports[-1].entries >= 6


async def test_audit_own_reads_are_not_logged_others_are(client: TestClient, app: web.Application) -> None:
    patient = await register_patient(client)
    boss = await admin(client)

    async def reads() -> int:
        async with app[keys.read_sessions]() as session:
            return int(await session.scalar(select(func.count()).select_from(AuditEntry)
                                            .where(AuditEntry.action == "patient.read")) or 0)

    await client.get(f"/api/v1/patients/{patient.patient_id}", headers=patient.auth)
    await client.get("/api/v1/me", headers=patient.auth)
    assert await reads() == 0
    await client.get(f"/api/v1/patients/{patient.patient_id}", headers=boss.auth)
    assert await reads() == 1
    await client.get("/api/v1/admin/users", headers=boss.auth)
    async with app[keys.read_sessions]() as session:
        listed = await session.scalar(select(func.count()).select_from(AuditEntry)
                                      .where(AuditEntry.action == "users.list"))
    assert listed == 1


async def test_audit_summary_says_what_checkpoints_cover(chain: web.Application, settings: Settings) -> None:
    report = await _verify(chain, settings)
    assert report.covered_to == 0
    assert "entries after 0 are not yet covered" in report.summary()
    async with transaction(chain[keys.sessions]) as session:
        await services.write_checkpoint(session, folder=settings.checkpoints_dir, key=load_audit_key(settings))
    covered = await _verify(chain, settings)
    assert covered.covered_to == 6
    assert "not yet covered" not in covered.summary()
