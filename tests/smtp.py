"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, for e-mail tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.services import free_port


@dataclass
class Sink:
    """An SMTP handler that keeps what it receives; `refuse_rcpt` answers RCPT with that reply instead."""

    envelopes: list[Envelope] = field(default_factory=list)
    refuse_rcpt: str | None = None

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def serve(handler: Sink, **kwargs: Any) -> Iterator[int]:
    """Run the server for the duration of a fixture; yields its port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
