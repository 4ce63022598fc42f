"""Signing in, shared by the API and the login page: throttled, audited, one answer for every failure."""

from __future__ import annotations

from aiohttp import web

from server import keys
from server.auth import services
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import audit_context, client_ip
from server.http.problems import TooManyRequests, Unauthorized


def totp_key(request: web.Request) -> bytes:
    return request.app[keys.key_material].derive("totp-secrets")


async def sign_in(request: web.Request, *, email: str, password: str, otp: str | None) -> services.LoginResult:
    """Throttled login shared by the API and the login page; raises the problem the caller should see."""
    throttle = request.app[keys.throttle]
    ip = client_ip(request)
    retry = await throttle.retry_after(email, ip)
    if retry is not None:
        raise TooManyRequests(retry, "Too many failed sign-ins; wait and try again")
    async with tx(request) as session:
        result = await services.login(
            session, passwords=request.app[keys.passwords], issuer=request.app[keys.token_issuer],
            totp_key=totp_key(request), email=email, password=password, otp=otp,
            ctx=audit_context(request), now=utcnow(),
        )
    if result.failure is services.LoginFailure.otp_required:
        raise Unauthorized("Enter the code from your authenticator app", code="otp_required")
    if result.tokens is None:
        await throttle.failed(email, ip)
        raise Unauthorized("The e-mail or password is wrong", code="invalid_credentials")
    await throttle.succeeded(email)
    return result
