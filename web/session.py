"""Browser sign-in: tokens in HttpOnly SameSite=Strict cookies, renewed transparently, and CSRF tokens.

Pages never put a token where scripts can read it; the refresh token rotates exactly as through the API.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from server import keys
from server.auth import services as auth_services
from server.auth.issuer import TokenPair
from server.db.base import utcnow
from server.http.context import tx
from server.http.middlewares import is_secure
from server.http.principal import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    Principal,
    audit_context,
    load_principal,
)
from server.http.problems import Forbidden, Unauthorized

# Cookies to set on whatever response the page returns, and this request's CSRF token.
_PENDING: web.RequestKey[list[tuple[str, str, dict[str, Any]]]] = web.RequestKey("pending_cookies")
_CSRF = web.RequestKey("csrf_token", str)


def _cookie(request: web.Request, name: str, value: str, *, max_age: int, http_only: bool = True) -> None:
    request.setdefault(_PENDING, []).append(
        (name, value, {"max_age": max_age, "httponly": http_only, "samesite": "Strict", "path": "/",
                       "secure": is_secure(request)})
    )


def remember_tokens(request: web.Request, tokens: TokenPair) -> None:
    settings = request.app[keys.settings]
    _cookie(request, ACCESS_COOKIE, tokens.access_token, max_age=tokens.expires_in)
    _cookie(request, REFRESH_COOKIE, tokens.refresh_token, max_age=settings.refresh_token_ttl_days * 86400)


def remember_access_token(request: web.Request, token: str) -> None:
    """After a step-up (second factor confirmed) only the access token changes."""
    _cookie(request, ACCESS_COOKIE, token, max_age=request.app[keys.token_issuer].access_ttl_seconds)


def forget_tokens(request: web.Request) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        _cookie(request, name, "", max_age=0)


def csrf_token(request: web.Request) -> str:
    """This browser's CSRF token, minted on first use; forms echo it back, scripts send it as a header."""
    token = request.get(_CSRF) or request.cookies.get(CSRF_COOKIE)
    if not token:
        token = secrets.token_urlsafe(24)
        _cookie(request, CSRF_COOKIE, token, max_age=86400 * 30, http_only=False)
    request[_CSRF] = token
    return token


def check_form_csrf(request: web.Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise Forbidden("The form has expired; reload the page and try again", code="csrf_failed")


async def page_principal(request: web.Request) -> Principal | None:
    """The signed-in user of a page, renewing an expired access cookie from the refresh cookie."""
    if keys.PRINCIPAL in request:
        return request[keys.PRINCIPAL]
    access = request.cookies.get(ACCESS_COOKIE)
    principal = None
    if access:
        try:
            principal = await load_principal(request, access, via_cookie=True)
        except Unauthorized:
            principal = None
    refresh = request.cookies.get(REFRESH_COOKIE)
    if principal is None and refresh:
        async with tx(request) as session:
            result = await auth_services.refresh(session, issuer=request.app[keys.token_issuer],
                                                 refresh_token=refresh, ctx=audit_context(request), now=utcnow())
        if isinstance(result, TokenPair):
            remember_tokens(request, result)
            principal = await load_principal(request, result.access_token, via_cookie=True)
        elif result is not auth_services.RefreshRefused.raced:
            # A race means another tab just renewed: its response carries the new cookies; keep them.
            forget_tokens(request)
    request[keys.PRINCIPAL] = principal
    return principal


@web.middleware
async def apply_cookies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set the cookies a page asked for, on its response or on the redirect/error it raised."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        for name, value, options in request.get(_PENDING, []):
            exc.set_cookie(name, value, **options)
        raise
    for name, value, options in request.get(_PENDING, []):
        response.set_cookie(name, value, **options)
    return response
