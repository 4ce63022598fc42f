"""Logs never carry personal or health data, whatever a caller passes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from server.observability import REDACTED, configure_logging, redact_phi


@pytest.fixture
def json_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(fmt="json", level="INFO")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_redaction_drops_phi_at_any_depth() -> None:
    event = {"event": "booked", "full_name": "Иван Иванов", "request": {"phone": "+7916", "items": [{"email": "a@b"}]},
             "status": 201}
    scrubbed = redact_phi(None, "info", event)
    assert scrubbed["full_name"] == REDACTED
    assert scrubbed["request"]["phone"] == REDACTED
    assert scrubbed["request"]["items"][0]["email"] == REDACTED
    assert scrubbed["status"] == 201


@pytest.mark.usefixtures("json_logging")
def test_json_logs_carry_no_phi(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.get_logger("t").info("registered", birth_date="1950-01-01", password="secret", route="/x")
    logging.getLogger("library").warning("library event %s", "x", extra={"email": "a@b.c"})
    lines = capsys.readouterr().err.strip().splitlines()
    ours, theirs = json.loads(lines[-2]), json.loads(lines[-1])
    assert ours["birth_date"] == REDACTED
    assert ours["password"] == REDACTED
    assert ours["route"] == "/x"
    assert "1950-01-01" not in lines[-2]
    assert theirs["event"] == "library event x"
    assert theirs["logger"] == "library"
