"""`python -m server` as an operator uses it on a fresh data folder: migrate, seed, sign in, verify the audit log."""

from __future__ import annotations

import asyncio
import re
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.app import create_app
from server.auth.models import User
from server.db.runner import run_in_session
from server.people.models import Physician, QaExpert
from server.settings import Settings
from tests import databases
from tests.conftest import make_settings
from tests.services import free_port, run_cli, server_env

NEW_PASSWORD = "a brand new staff password"


@dataclass
class Install:
    """One installation: a data folder, its database, and the environment every command runs with."""

    tmp_path: Path
    database_url: str

    @property
    def data_dir(self) -> Path:
        return self.tmp_path / "var"

    @property
    def accounts_file(self) -> Path:
        return self.data_dir / "demo-accounts.txt"

    def env(self, **extra: str) -> dict[str, str]:
        values = {"TELEMED_ENV": "development", "TELEMED_DATA_DIR": str(self.data_dir),
                  "TELEMED_DATABASE_URL": self.database_url, **extra}
        return server_env(**values)

    def run(self, *args: str, ok: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run one command; with `ok`, fail showing its output unless it exits 0."""
        result = run_cli(*args, env=self.env(**extra_env), cwd=self.tmp_path)
        if ok:
            assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def settings(self) -> Settings:
        """The same installation, as the app in this process sees it."""
        return make_settings(self.tmp_path, self.database_url, env="development")

    def accounts(self) -> dict[str, tuple[str, str]]:
        """E-mail -> (role, password), from the seeded accounts file."""
        pattern = re.compile(r"^\s+(\w+)\s+(\S+@\S+)\s+password: (\S+)$", re.MULTILINE)
        return {email: (role, password) for role, email, password in pattern.findall(self.accounts_file.read_text())}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Install]:
    """A fresh data folder and an empty (never migrated) database."""
    url = databases.empty_database(tmp_path / "db")
    yield Install(tmp_path, url)
    databases.drop(url)


@pytest.fixture
def install(tmp_path: Path, database_url: str) -> Install:
    """A fresh data folder and a database migrated to head (a copy of one `db upgrade` built)."""
    return Install(tmp_path, database_url)


@pytest.fixture
def seeded(install: Install) -> Install:
    install.run("demo", "seed")
    return install


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _user_count(settings: Settings) -> int:
    async def work(session: AsyncSession, _settings: Settings) -> int:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)

    return run_in_session(work, settings)


async def _login(aiohttp_client: Any, settings: Settings, body: dict[str, str]) -> tuple[int, str]:
    client = await aiohttp_client(create_app(settings))
    response = await client.post("/api/v1/auth/login", json=body)
    return response.status, await response.text()


def test_db_upgrade_then_check_succeeds(fresh: Install) -> None:
    assert "database at head" in fresh.run("db", "upgrade").stdout
    assert "models match migrations" in fresh.run("db", "check").stdout


def test_demo_seed_writes_eight_accounts_to_a_private_file(seeded: Install) -> None:
    assert _mode(seeded.accounts_file) == 0o600
    roles = sorted(role for role, _password in seeded.accounts().values())
    assert roles == ["admin", "patient", "patient", "physician", "physician", "physician", "qa_expert", "qa_expert"]
    assert "admin@demo.clinic" in seeded.accounts()
    assert "duty@demo.clinic" in seeded.accounts()  # works every day round the clock: a call can start any time
    assert _user_count(seeded.settings()) == 8


def test_demo_seed_if_empty_changes_nothing_the_second_time(seeded: Install) -> None:
    before = seeded.accounts_file.read_bytes()
    result = seeded.run("demo", "seed", "--if-empty")
    assert "password:" not in result.stdout  # logins are printed once only
    assert seeded.accounts_file.read_bytes() == before
    assert _user_count(seeded.settings()) == 8


def test_demo_seed_without_if_empty_refuses_a_seeded_database(seeded: Install) -> None:
    result = seeded.run("demo", "seed", ok=False)
    assert result.returncode != 0
    assert "already exist" in result.stderr


def test_generated_keys_are_private(seeded: Install) -> None:
    seeded.run("audit", "checkpoint")  # the audit key is made by the CLI or the worker, never by web nodes
    keys_dir = seeded.data_dir / "keys"
    files = [path for path in keys_dir.rglob("*") if path.is_file()]
    assert {path.name for path in files} >= {"master.key", "audit.pem"}
    assert any(path.parent.name == "jwt" for path in files)
    assert {path.name: _mode(path) for path in files} == {path.name: 0o600 for path in files}
    folders = [seeded.data_dir, keys_dir, *(path for path in keys_dir.rglob("*") if path.is_dir())]
    assert {str(path): _mode(path) for path in folders} == {str(path): 0o700 for path in folders}


async def test_demo_otp_code_signs_the_admin_in(seeded: Install, aiohttp_client: Any) -> None:
    result = await asyncio.to_thread(seeded.run, "demo", "otp", "admin@demo.clinic")
    code = result.stdout.strip()
    assert re.fullmatch(r"\d{6}", code), result.stdout
    _role, password = seeded.accounts()["admin@demo.clinic"]
    status, body = await _login(aiohttp_client, seeded.settings(),
                                {"email": "admin@demo.clinic", "password": password, "otp": code})
    assert status == 200, body


async def test_users_create_physician_can_sign_in(install: Install, aiohttp_client: Any) -> None:
    result = await asyncio.to_thread(
        install.run, "users", "create", "--role", "physician", "--email", "new.doctor@clinic.example",
        "--full-name", "New Doctor", "--specialty", "cardiology", "--licence-number", "77-01-9",
        "--time-zone", "Europe/Moscow", TELEMED_NEW_PASSWORD=NEW_PASSWORD)
    assert result.stdout.startswith("created physician ")
    status, body = await _login(aiohttp_client, install.settings(),
                                {"email": "new.doctor@clinic.example", "password": NEW_PASSWORD})
    assert status == 200, body


def test_users_create_an_expert_who_practises_as_a_physician_in_a_department(install: Install) -> None:
    made = install.run("users", "create", "--role", "physician", "--email", "doc@clinic.example", "--full-name",
                       "Doc", "--specialty", "cardiology", "--licence-number", "77-01-9", "--time-zone",
                       "Europe/Moscow", "--department", "cardiology", TELEMED_NEW_PASSWORD=NEW_PASSWORD)
    user_id = made.stdout.split()[-1]

    async def physician_of(session: AsyncSession, _settings: Settings) -> str:
        return str(await session.scalar(select(Physician.id).where(Physician.user_id == uuid.UUID(user_id))))

    physician_id = run_in_session(physician_of, install.settings())
    install.run("users", "create", "--role", "qa_expert", "--email", "qa@clinic.example", "--full-name", "Expert",
                "--department", "cardiology", "--practises-as", physician_id, TELEMED_NEW_PASSWORD=NEW_PASSWORD)

    async def expert(session: AsyncSession, _settings: Settings) -> tuple[str | None, str]:
        found = (await session.scalars(select(QaExpert))).one()
        return found.department, str(found.physician_id)

    assert run_in_session(expert, install.settings()) == ("cardiology", physician_id)
    refused = install.run("users", "create", "--role", "qa_expert", "--email", "qa2@clinic.example", "--full-name",
                          "Other", "--practises-as", str(uuid.uuid4()), TELEMED_NEW_PASSWORD=NEW_PASSWORD, ok=False)
    assert refused.returncode != 0
    assert "practises_as" in refused.stderr


def test_audit_verify_passes_then_names_tampered_entry(seeded: Install) -> None:
    intact = seeded.run("audit", "verify")
    assert "audit chain intact: 14 entries" in intact.stdout  # 8 accounts, 3 consent texts drafted and published

    async def tamper(session: AsyncSession, _settings: Settings) -> None:
        await session.execute(text("UPDATE audit_entries SET action = 'x' WHERE seq = 2"))

    run_in_session(tamper, seeded.settings())
    broken = seeded.run("audit", "verify", ok=False)
    assert broken.returncode == 1, broken.stderr
    assert "broken at entry 2" in broken.stdout


@pytest.mark.parametrize(("command", "needed"), [
    ("audit verify", ("TELEMED_AUDIT_KEY",)),  # only the worker and the CLI hold the audit key
    ("serve --no-worker --port {port}", ("TELEMED_JWT_PRIVATE_KEY", "TELEMED_MASTER_KEY")),
], ids=["audit-verify", "serve"])
def test_production_without_configured_keys_refuses_to_run(install: Install, command: str,
                                                           needed: tuple[str, ...]) -> None:
    result = install.run(*command.format(port=free_port()).split(), ok=False, TELEMED_ENV="production")
    assert result.returncode != 0
    for name in needed:
        assert name in result.stderr
    assert "Traceback" not in result.stderr  # one clear line for the operator
    assert not (install.data_dir / "keys").exists()  # nothing generated to run on instead
