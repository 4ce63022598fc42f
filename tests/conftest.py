"""Shared fixtures: settings on a private data folder, a fresh migrated database, the app and a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import keys
from server.app import create_app
from server.settings import Settings
from tests import databases


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`postgres` tests check PostgreSQL-specific behaviour; they run in the PostgreSQL pass only."""
    if databases.on_postgres():
        return
    kept = [item for item in items if item.get_closest_marker("postgres") is None]
    deselected = [item for item in items if item.get_closest_marker("postgres") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return databases.prepare_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def database_url(template_database: str, tmp_path: Path) -> Iterator[str]:
    url = databases.clone(template_database, tmp_path / "db")
    yield url
    databases.drop(url)


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    """Test settings: a private data folder, cheap argon2, no .env, nothing from the environment that matters."""
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "broker_url": f"sqla+sqlite:///{tmp_path / 'var' / 'broker.sqlite3'}",
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "rate_limit_storage_url": "async+memory://",
        "registrations_per_ip_per_hour": 1000,  # tests register and sign in many users from 127.0.0.1
        "login_attempts_per_ip": 1000,
        "log_format": "console",
        "log_level": "WARNING",
        "start_worker": False,
        "media_workers": 0,  # peers in this process: no worker processes per app (test_media_workers*.py has them)
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: Any, app: web.Application) -> TestClient:
    return await aiohttp_client(app)  # type: ignore[no-any-return]


@pytest.fixture
def sessions(app: web.Application) -> Any:
    """The app's sessionmaker (available once the client has started the app)."""
    return lambda: app[keys.sessions]()
