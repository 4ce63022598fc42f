"""Migrations build the schema the models describe, and come back down cleanly."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from server.db import migrate
from server.db.engine import create_engine, create_sessionmaker, transaction
from server.models import Base
from server.people.models import Patient
from tests import databases


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine(url, null_pool=True)
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        await engine.dispose()
        return names

    return asyncio.run(read())


@pytest.fixture
def empty_url(tmp_path: Path) -> str:
    url = databases.empty_database(tmp_path)
    yield url  # type: ignore[misc]
    databases.drop(url)


def test_migrations_upgrade_from_empty_to_head_and_back_down(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert set(Base.metadata.tables) <= _tables(empty_url)
    assert migrate.check(empty_url) is None
    migrate.downgrade(empty_url, "base")
    assert _tables(empty_url) <= {"alembic_version"}
    migrate.upgrade(empty_url)  # and up again: downgrade left nothing behind that blocks it
    assert migrate.check(empty_url) is None


def test_migrations_check_reports_a_model_change(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    from sqlalchemy import Column, String

    column = Column("nickname", String(50), nullable=True)
    Patient.__table__.append_column(column)
    try:
        difference = migrate.check(empty_url)
    finally:
        Patient.__table__._columns.remove(column)  # restore the shared metadata for other tests
    assert difference is not None
    assert "nickname" in difference


async def test_migrations_datetimes_come_back_aware_utc(database_url: str) -> None:
    engine = create_engine(database_url, null_pool=True)
    sessions = create_sessionmaker(engine)
    moscow = dt.timezone(dt.timedelta(hours=3))
    from server.auth.models import Role, User

    async with transaction(sessions) as session:
        session.add(User(email="tz@example.org", password_hash="x", role=Role.admin, full_name="TZ",
                         created_at=dt.datetime(2026, 3, 29, 4, 30, tzinfo=moscow)))
    async with sessions() as session:
        created = (await session.scalars(select(User.created_at).where(User.email == "tz@example.org"))).one()
    await engine.dispose()
    assert created.tzinfo is not None
    assert created == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    assert created.utcoffset() == dt.timedelta(0)


async def test_migrations_naive_datetimes_are_refused(database_url: str) -> None:
    engine = create_engine(database_url, null_pool=True)
    from server.auth.models import Role, User

    with pytest.raises(Exception, match="naive datetime"):
        async with transaction(create_sessionmaker(engine)) as session:
            session.add(User(email="naive@example.org", password_hash="x", role=Role.admin, full_name="N",
                             created_at=dt.datetime(2026, 1, 1)))  # noqa: DTZ001  # the point of the test
    await engine.dispose()


@pytest.mark.postgres
async def test_migrations_postgres_stores_timestamptz(database_url: str) -> None:
    engine = create_engine(database_url, null_pool=True)
    async with engine.connect() as connection:
        assert connection.dialect.name == "postgresql"
        kind = (await connection.execute(text(
            "SELECT data_type FROM information_schema.columns WHERE table_name='users' AND column_name='created_at'"
        ))).scalar()
    await engine.dispose()
    assert kind == "timestamp with time zone"
