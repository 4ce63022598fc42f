"""Fresh, migrated databases for each test: a copied SQLite file, or a PostgreSQL database from a template.

Migrating once and cloning keeps every test on a schema built by the real migrations, at the cost of
a file copy (SQLite) or CREATE DATABASE ... TEMPLATE (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from server.db.migrate import upgrade

POSTGRES_URL = os.environ.get("TELEMED_TEST_DATABASE_URL")
TEMPLATE_DB = "telemed_template"


def on_postgres() -> bool:
    return bool(POSTGRES_URL)


def _admin_dsn(database: str) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def _with_database(database: str) -> str:
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


async def _pg(sql: str) -> None:
    connection = await asyncpg.connect(_admin_dsn(make_url(POSTGRES_URL).database or "postgres"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def prepare_template(folder: Path) -> str:
    """Migrate the template once per test session; returns its URL (SQLite) or name (PostgreSQL)."""
    if on_postgres():
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)'))
        asyncio.run(_pg(f'CREATE DATABASE "{TEMPLATE_DB}"'))
        upgrade(_with_database(TEMPLATE_DB))
        return TEMPLATE_DB
    path = folder / "template.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return str(path)


def clone(template: str, folder: Path) -> str:
    """A new database with the template's schema; returns its SQLAlchemy URL."""
    if on_postgres():
        name = f"t_{uuid.uuid4().hex[:16]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        return _with_database(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "telemed.sqlite3"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


def drop(url: str) -> None:
    if on_postgres():
        name = make_url(url).database
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def empty_database(folder: Path) -> str:
    """An empty database (no schema), for migration tests."""
    if on_postgres():
        name = f"e_{uuid.uuid4().hex[:16]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        return _with_database(name)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{folder / 'empty.sqlite3'}"
