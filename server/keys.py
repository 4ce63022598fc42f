"""Typed keys for everything the app and each request carry (aiohttp `AppKey`s)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.auth.issuer import TokenIssuer
from server.auth.passwords import Passwords
from server.keyring import KeyMaterial
from server.settings import Settings

if TYPE_CHECKING:
    from consent.services import WithdrawalEvents
    from consent.setup import ConsentSetup
    from server.auth.throttle import LoginThrottle
    from server.http.principal import Principal
    from server.observability import Metrics
    from server.scheduling.live import WaitingRoomBus
    from signaling.registry import CallRegistry
    from signaling.sockets import SocketsPerAddress

settings = web.AppKey("settings", Settings)
key_material = web.AppKey("key_material", KeyMaterial)
engine = web.AppKey("engine", AsyncEngine)
sessions = web.AppKey("sessions", async_sessionmaker[AsyncSession])
read_sessions = web.AppKey("read_sessions", async_sessionmaker[AsyncSession])
passwords = web.AppKey("passwords", Passwords)
token_issuer = web.AppKey("token_issuer", TokenIssuer)
throttle: web.AppKey[LoginThrottle] = web.AppKey("throttle")
waiting_room: web.AppKey[WaitingRoomBus] = web.AppKey("waiting_room")
metrics: web.AppKey[Metrics] = web.AppKey("metrics")
consent: web.AppKey[ConsentSetup] = web.AppKey("consent")
consent_withdrawals: web.AppKey[WithdrawalEvents] = web.AppKey("consent_withdrawals")
calls: web.AppKey[CallRegistry] = web.AppKey("calls")  # the live calls (rooms) of this node
signaling_sockets: web.AppKey[SocketsPerAddress] = web.AppKey("signaling_sockets")  # open sockets per address

# Per-request values (request[...]).
REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")
