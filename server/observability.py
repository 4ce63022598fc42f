"""Logs and metrics. Logs are structured, carry the request id, and never carry health data."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

# Field names that may hold personal or health data, or secrets. Dropped from every log event,
# at any depth, whatever the caller passed: a log line is no place for them.
REDACTED_FIELDS = frozenset({
    "name", "full_name", "first_name", "last_name", "patronymic", "birth_date", "dob", "phone", "email",
    "address", "snils", "policy", "notes", "note", "complaint", "diagnosis", "answers", "protocol",
    "password", "new_password", "token", "access_token", "refresh_token", "otp", "code", "secret",
    "totp_secret", "authorization", "cookie", "set-cookie",
})
REDACTED = "[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: (REDACTED if str(k).lower() in REDACTED_FIELDS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_phi(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace PHI and secrets by a marker before anything renders them."""
    for key in list(event):
        if key.lower() in REDACTED_FIELDS:
            event[key] = REDACTED
        elif key != "event":
            event[key] = _scrub(event[key])
    return event


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]  # generic in typeshed only
    """Writes to whatever `sys.stderr` is now (test runners and daemons swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # a live lookup instead of the stream captured at creation
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(*, fmt: str = "console", level: str = "INFO") -> None:
    """Structured logs to stderr: JSON for machines in production, readable in development.

    Everything, ours and libraries', goes through the standard library's logging, so one redaction step
    sees every event and a failing log write is reported by logging instead of failing the request.
    """
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(
        colors=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_phi,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=shared,
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # our middleware logs requests
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # /readyz reads the revision


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram


def create_metrics() -> Metrics:
    """One registry per app, so several apps in one process (tests) never share counters."""
    registry = CollectorRegistry()
    requests = Counter("telemed_http_requests", "HTTP requests served", ["method", "route", "status"],
                       registry=registry)
    latency = Histogram("telemed_http_request_seconds", "Time to answer an HTTP request",
                        ["method", "route"], registry=registry)
    return Metrics(registry, requests, latency)
