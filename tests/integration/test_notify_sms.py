"""WebhookSmsGateway against a real local HTTP server standing in for the clinic's SMS gateway."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from server.notify.errors import SmsDeliveryError
from server.notify.sms import WebhookSmsGateway

PHONE = "+79991234567"
TOKEN = "gateway-token-123"
TEXT = "Клиника: Вы записаны на телеконсультацию 12 мар., 14:20 (Москва, UTC+3)."

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class Gateway:
    """Answers each POST with `status` and `body`, and keeps what it was sent."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"id": "gw-42"})
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.headers), await request.json()))
        if request.headers.get("Authorization") not in (f"Bearer {TOKEN}", None):
            return web.json_response({"error": "bad token"}, status=401)
        if isinstance(self.body, str):
            return web.Response(status=self.status, text=self.body, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
async def gateway_url(aiohttp_server: ServerFactory, gateway: Gateway) -> str:
    app = web.Application()
    app.router.add_post("/sms", gateway.handle)
    server = await aiohttp_server(app)
    assert server.host == "127.0.0.1"
    return str(server.make_url("/sms"))


async def test_webhook_posts_json_with_the_bearer_token(gateway: Gateway, gateway_url: str) -> None:
    sms = WebhookSmsGateway(gateway_url, SecretStr(TOKEN))

    with structlog.testing.capture_logs() as logs:
        message_id = await sms.send(to=PHONE, text=TEXT)

    assert message_id == "gw-42"
    ((headers, body),) = gateway.requests
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"to": PHONE, "text": TEXT}
    assert logs
    assert PHONE not in repr(logs)
    assert TOKEN not in repr(logs)


async def test_webhook_without_an_id_in_the_answer_gets_a_generated_one(gateway: Gateway, gateway_url: str) -> None:
    gateway.status, gateway.body = 202, "queued"
    first = await WebhookSmsGateway(gateway_url, TOKEN).send(to=PHONE, text=TEXT)
    second = await WebhookSmsGateway(gateway_url, TOKEN).send(to=PHONE, text=TEXT)
    assert first.startswith("sms-")
    assert second.startswith("sms-")
    assert first != second


async def test_webhook_without_a_token_sends_no_authorization(gateway: Gateway, gateway_url: str) -> None:
    await WebhookSmsGateway(gateway_url, None).send(to=PHONE, text=TEXT)
    ((headers, _),) = gateway.requests
    assert "Authorization" not in headers


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (400, False)])
async def test_webhook_error_status_raises_sms_delivery_error(
    gateway: Gateway, gateway_url: str, status: int, retryable: bool
) -> None:
    gateway.status, gateway.body = status, {"error": f"failed for {PHONE}"}
    with structlog.testing.capture_logs() as logs, pytest.raises(SmsDeliveryError) as caught:
        await WebhookSmsGateway(gateway_url, TOKEN).send(to=PHONE, text=TEXT)
    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert PHONE not in str(caught.value)
    assert PHONE not in repr(logs)


async def test_webhook_wrong_token_is_not_retryable(gateway: Gateway, gateway_url: str) -> None:
    with pytest.raises(SmsDeliveryError) as caught:
        await WebhookSmsGateway(gateway_url, "wrong").send(to=PHONE, text=TEXT)
    assert caught.value.status == 401
    assert caught.value.retryable is False


async def test_webhook_redirect_is_not_followed(gateway: Gateway, gateway_url: str) -> None:
    gateway.status, gateway.body, gateway.headers = 307, "moved", {"Location": "http://127.0.0.1:1/elsewhere"}
    with pytest.raises(SmsDeliveryError) as caught:
        await WebhookSmsGateway(gateway_url, TOKEN).send(to=PHONE, text=TEXT)
    assert caught.value.status == 307
    assert len(gateway.requests) == 1


async def test_webhook_unreachable_gateway_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SmsDeliveryError) as caught:
        await WebhookSmsGateway(f"http://127.0.0.1:{port}/sms", TOKEN, timeout=2).send(to=PHONE, text=TEXT)
    assert caught.value.status is None
    assert caught.value.retryable is True


async def test_webhook_uses_the_given_session_factory(gateway: Gateway, gateway_url: str) -> None:
    sessions: list[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        sessions.append(aiohttp.ClientSession(headers={"User-Agent": "telemed-test"}))
        return sessions[-1]

    await WebhookSmsGateway(gateway_url, TOKEN, session_factory=factory).send(to=PHONE, text=TEXT)
    ((headers, _),) = gateway.requests
    assert headers["User-Agent"] == "telemed-test"
    assert sessions[0].closed  # each send closes the session it opened


async def test_webhook_refuses_a_malformed_number_before_sending(gateway: Gateway, gateway_url: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        await WebhookSmsGateway(gateway_url, TOKEN).send(to="8 999 123-45-67", text=TEXT)
    assert gateway.requests == []
