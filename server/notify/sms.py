"""Sending an SMS: through the clinic's gateway webhook, or into the development outbox as JSON files.

The webhook contract: `POST <url>` with `Authorization: Bearer <token>` and the JSON body
`{"to": "+79991234567", "text": "..."}`; any 2xx is success, and a JSON answer's string "id", if present,
is the gateway's message id. Phone numbers are personal data: never logged, never in an exception.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import structlog
from pydantic import SecretStr

from server.notify.errors import NotifyConfigurationError, SmsDeliveryError
from server.notify.hosts import is_loopback
from server.notify.outbox import write_private_file
from server.settings import Settings

log = structlog.get_logger("telemed.notify")

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# Worth another try later: the gateway is overloaded, rate-limits us, or timed out.
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


class SmsGateway(Protocol):
    async def send(self, *, to: str, text: str) -> str:
        """Hand one SMS over for delivery; returns the gateway's (or a generated) message id."""
        ...


class WebhookSmsGateway:
    """POSTs each SMS as JSON to the gateway's webhook; a new HTTP session per send (tasks own their loops)."""

    def __init__(
        self,
        url: str,
        token: SecretStr | str | None,
        *,
        timeout: float = 10.0,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        self._url = url
        self._token = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session_factory = session_factory or aiohttp.ClientSession

    async def send(self, *, to: str, text: str) -> str:
        """Deliver to the gateway; raises `SmsDeliveryError` (with `status` and `retryable`) unless it says 2xx."""
        _check(to, text)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with self._session_factory() as session, session.post(
                self._url, json={"to": to, "text": text}, headers=headers, timeout=self._timeout,
                allow_redirects=False,  # a redirect is a misconfigured URL, not a delivery
            ) as response:
                if not 200 <= response.status < 300:
                    raise SmsDeliveryError(
                        f"SMS gateway answered {response.status}", status=response.status,
                        retryable=response.status >= 500 or response.status in _RETRYABLE_STATUSES,
                    )
                gateway_id = await _gateway_id(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsDeliveryError(f"SMS gateway unreachable ({type(exc).__name__})", retryable=True) from exc
        message_id = gateway_id or f"sms-{uuid.uuid4()}"
        log.info("notify.sms.sent", transport="webhook", message_id=message_id)
        return message_id


class OutboxSmsGateway:
    """Development default: each SMS becomes `<outbox>/sms/<time>-<random>.json` (0600, folder 0700)."""

    def __init__(self, outbox_dir: Path) -> None:
        self.folder = outbox_dir / "sms"

    async def send(self, *, to: str, text: str) -> str:
        """Write the SMS as the webhook would receive it, plus an id and the time; returns the id."""
        _check(to, text)
        message_id = f"sms-{uuid.uuid4()}"
        record = {"id": message_id, "created_at": dt.datetime.now(dt.UTC).isoformat(), "to": to, "text": text}
        data = json.dumps(record, ensure_ascii=False, indent=2).encode()
        path = await asyncio.to_thread(write_private_file, self.folder, suffix=".json", data=data)
        log.info("notify.sms.sent", transport="outbox", message_id=message_id, file=path.name)
        return message_id


def sms_gateway_from_settings(settings: Settings) -> SmsGateway:
    """The webhook when `sms_webhook_url` is set; otherwise the outbox, which production refuses."""
    if settings.sms_webhook_url is None:
        if settings.is_production:
            raise NotifyConfigurationError("TELEMED_SMS_WEBHOOK_URL must be set in production")
        return OutboxSmsGateway(settings.outbox_dir)
    url = urlsplit(settings.sms_webhook_url)
    if url.scheme not in ("https", "http") or not url.hostname:
        raise NotifyConfigurationError("TELEMED_SMS_WEBHOOK_URL must be an http(s) URL")
    if settings.is_production and url.scheme != "https" and not is_loopback(url.hostname):
        raise NotifyConfigurationError("TELEMED_SMS_WEBHOOK_URL must use https in production")
    return WebhookSmsGateway(settings.sms_webhook_url, settings.sms_webhook_token)


def _check(to: str, text: str) -> None:
    if not _E164.fullmatch(to):
        raise ValueError("to must be a phone number in E.164 form, e.g. +79991234567")  # never echo the number
    if not text.strip():
        raise ValueError("text must not be empty")


async def _gateway_id(response: aiohttp.ClientResponse) -> str | None:
    body = await response.read()  # read to the end, so the connection closes cleanly
    if response.content_type != "application/json":
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    gateway_id = answer.get("id") if isinstance(answer, dict) else None
    return gateway_id if isinstance(gateway_id, str) and 0 < len(gateway_id) <= 200 else None
