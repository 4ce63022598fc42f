"""Request id, security headers, metrics and the one place errors become problem documents."""

from __future__ import annotations

import json
import re
import secrets
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from server import keys
from server.http.problems import PROBLEM_CONTENT_TYPE, ProblemError

log = structlog.get_logger("telemed.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Accept a well-formed upstream id (load balancer), else mint one; it follows the request into logs."""
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
    request[keys.REQUEST_ID] = rid
    structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    response.headers["X-Request-ID"] = rid
    return response


def _problem_response(request: web.Request, error: ProblemError) -> web.Response:
    body = error.to_problem(instance=request.path, request_id=request.get(keys.REQUEST_ID))
    response = web.Response(text=json.dumps(body), status=error.status, content_type=PROBLEM_CONTENT_TYPE)
    response.headers.update(error.headers)
    return response


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def problem_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as RFC 9457 JSON; unexpected ones are logged (without PHI) and hidden."""
    try:
        return await handler(request)
    except ProblemError as error:
        return _problem_response(request, error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = ProblemError(exc.text if exc.status != 404 else None, status=exc.status,
                               code=_HTTP_CODES.get(exc.status, f"http_{exc.status}"), title=exc.reason)
        response = _problem_response(request, problem)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        # The route pattern, not the path: paths carry ids, and ids of patients are personal data.
        log.exception("unhandled_error", route=_route(request), method=request.method)
        return _problem_response(request, ProblemError(
            "Something went wrong on our side; the request id identifies it for the clinic's support.",
            status=500, code="internal_error", title="Internal error"))


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Applied to raised responses (redirects) too, which skip the normal return path."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _add_security_headers(request, exc)
        raise
    _add_security_headers(request, response)
    return response


def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Content-Security-Policy",
                       "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
                       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
    headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    if is_secure(request):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def is_secure(request: web.Request) -> bool:
    """Served over TLS, directly or behind a trusted proxy that says so."""
    if request.secure:
        return True
    settings = request.app[keys.settings]
    return settings.trust_forwarded_headers and request.headers.get("X-Forwarded-Proto") == "https"


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = _route(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # raised redirects are answers, not errors
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        collected = request.app[keys.metrics]
        collected.requests.labels(request.method, route, str(status)).inc()
        collected.latency.labels(request.method, route).observe(elapsed)
        log.info("request", method=request.method, route=route, status=status, ms=round(elapsed * 1000, 1))
