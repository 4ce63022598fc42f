"""Settings: every one documented in .env.example, and the example itself loads as a working .env."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_settings_every_field_is_documented_in_env_example() -> None:
    documented = EXAMPLE.read_text()
    missing = [name for name in Settings.model_fields if f"TELEMED_{name.upper()}=" not in documented]
    assert missing == []


def test_settings_env_example_loads_with_empty_meaning_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"TELEMED_{name.upper()}", raising=False)
    settings = Settings(_env_file=EXAMPLE)  # type: ignore[call-arg]
    assert settings.jwt_private_key is None
    assert settings.master_key is None
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///var/")
    assert settings.resolved_broker_url == "sqla+sqlite:///var/broker.sqlite3"


def test_settings_secrets_never_show_in_repr() -> None:
    settings = Settings(_env_file=None, master_key="c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=")  # type: ignore[call-arg]
    assert "c2VjcmV0" not in repr(settings)
    assert "c2VjcmV0" not in str(settings.model_dump())


def test_settings_refuse_unknown_locale() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, default_locale="de")  # type: ignore[call-arg]


def test_settings_production_keeps_admin_second_factor() -> None:
    with pytest.raises(ValidationError, match="ADMIN_MFA"):
        Settings(_env_file=None, env="production", admin_mfa_required=False)  # type: ignore[call-arg]
