"""REST endpoints for signing in and out, refreshing tokens, and the second factor."""

from __future__ import annotations

import time

from aiohttp import web

from server import keys
from server.auth import schemas, services
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import audit_context, authenticate
from server.http.problems import Unauthorized
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.http.signin import sign_in, totp_key

router = ApiRouter("auth")


@router.route("POST", "/api/v1/auth/login", summary="Sign in with e-mail and password (and TOTP code)",
              body=schemas.LoginIn, response=schemas.TokenOut, public=True, errors=(401, 429))
async def login(request: web.Request, body: schemas.LoginIn) -> web.Response:
    """Bad credentials answer the same whether or not the account exists; failures are throttled."""
    tokens = (await sign_in(request, email=body.email, password=body.password, otp=body.otp)).pair
    return json_response(schemas.TokenOut(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                                          expires_in=tokens.expires_in))


@router.route("POST", "/api/v1/auth/refresh", summary="Exchange a refresh token for a new pair",
              body=schemas.RefreshIn, response=schemas.TokenOut, public=True, errors=(401,))
async def refresh(request: web.Request, body: schemas.RefreshIn) -> web.Response:
    """Each refresh token works once; presenting a spent one ends the whole session."""
    async with tx(request) as session:
        result = await services.refresh(session, issuer=request.app[keys.token_issuer],
                                        refresh_token=body.refresh_token, ctx=audit_context(request), now=utcnow())
    if isinstance(result, services.RefreshRefused):
        raise Unauthorized("The refresh token is not valid", code="invalid_refresh_token")
    return json_response(schemas.TokenOut(access_token=result.access_token, refresh_token=result.refresh_token,
                                          expires_in=result.expires_in))


@router.route("POST", "/api/v1/auth/logout", summary="End this session", status=204, allow_mfa_pending=True)
async def logout(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    async with tx(request) as session:
        await services.logout(session, session_id=principal.session_id, ctx=audit_context(request), now=utcnow())
    return web.Response(status=204)


@router.route("POST", "/api/v1/auth/mfa/totp", summary="Start setting up a TOTP second factor (staff)",
              response=schemas.TotpSetupOut, allow_mfa_pending=True, errors=(403, 409))
async def totp_begin(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    async with tx(request) as session:
        enrolment = await services.begin_totp(session, user_id=principal.user_id, totp_key=totp_key(request))
    return json_response(schemas.TotpSetupOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri))


@router.route("POST", "/api/v1/auth/mfa/totp/confirm", summary="Confirm the TOTP set-up with a code",
              body=schemas.TotpConfirmIn, response=schemas.AccessTokenOut, allow_mfa_pending=True,
              errors=(409,))
async def totp_confirm(request: web.Request, body: schemas.TotpConfirmIn) -> web.Response:
    """Returns an access token for this session that now counts as two-factor."""
    principal = await authenticate(request)
    issuer = request.app[keys.token_issuer]
    async with tx(request) as session:
        token = await services.confirm_totp(session, issuer=issuer, user_id=principal.user_id,
                                            session_id=principal.session_id, code=body.code,
                                            totp_key=totp_key(request), ctx=audit_context(request), now=utcnow())
    return json_response(schemas.AccessTokenOut(access_token=token, expires_in=issuer.access_ttl_seconds))


@router.route("GET", "/api/v1/auth/jwks", summary="Public keys that verify access tokens (JWKS)",
              response=schemas.Jwks, public=True)
async def jwks(request: web.Request) -> web.Response:
    return json_response(schemas.Jwks.model_validate(request.app[keys.key_material].jwt.jwks(now=time.time())))
