"""Logs never carry personal or health data, whatever a caller passes."""

from __future__ import annotations

import json

import pytest
import structlog

from server.observability import REDACTED, configure_logging, redact_phi


def test_redaction_drops_phi_at_any_depth() -> None:
    event = {"event": "booked", "full_name": "Иван Иванов", "request": {"phone": "+7916", "items": [{"email": "a@b"}]},
             "status": 201}
    scrubbed = redact_phi(None, "info", event)
    assert scrubbed["full_name"] == REDACTED
    assert scrubbed["request"]["phone"] == REDACTED
    assert scrubbed["request"]["items"][0]["email"] == REDACTED
    assert scrubbed["status"] == 201


def test_json_logs_carry_no_phi(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json", level="INFO")
    structlog.get_logger("t").info("registered", birth_date="1950-01-01", password="secret", route="/x")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["birth_date"] == REDACTED
    assert record["password"] == REDACTED
    assert record["route"] == "/x"
    assert "1950-01-01" not in line
