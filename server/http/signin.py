"""Signing in, shared by the API and the login page: throttled, audited, one answer for every failure."""

from __future__ import annotations

from aiohttp import web

from server import keys
from server.auth import services
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import audit_context, client_ip
from server.http.problems import TooManyRequests, Unauthorized


def totp_key(request: web.Request) -> bytes:
    return request.app[keys.key_material].derive("totp-secrets")


async def sign_in(request: web.Request, *, email: str, password: str, otp: str | None) -> services.LoginResult:
    """Throttled login shared by the API and the login page; raises the problem the caller should see.

    The password is checked in a read-only session, so the ~0.1 s of argon2id never holds a write lock;
    only the short second half (second factor, session, audit entry) writes.
    """
    throttle = request.app[keys.throttle]
    retry = await throttle.attempt(email, client_ip(request))
    if retry is not None:
        raise TooManyRequests(retry, "Too many sign-in attempts; wait and try again")
    async with read(request) as session:
        check = await services.check_password(session, passwords=request.app[keys.passwords], email=email,
                                              password=password)
    async with tx(request) as session:
        result = await services.login(session, check=check, issuer=request.app[keys.token_issuer],
                                      totp_key=totp_key(request), otp=otp, ctx=audit_context(request),
                                      now=utcnow(),
                                      retired_totp_keys=request.app[keys.key_material].derive_retired("totp-secrets"))
    if result.failure is services.LoginFailure.otp_required:
        raise Unauthorized("Enter the code from your authenticator app", code="otp_required")
    if result.tokens is None:
        raise Unauthorized("The e-mail or password is wrong", code="invalid_credentials")
    await throttle.succeeded(email)
    return result


async def allow_registration(request: web.Request) -> None:
    """Registration costs a hash and reveals a taken e-mail, so each address gets only a few per hour."""
    retry = await request.app[keys.throttle].registration(client_ip(request))
    if retry is not None:
        raise TooManyRequests(retry, "Too many new accounts from this address; try again later")
