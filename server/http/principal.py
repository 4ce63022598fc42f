"""Who is calling: the access token (header or cookie) checked against the live account and session."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select

from server import keys
from server.audit.services import AuditContext, hash_ip
from server.auth.models import AuthSession, Role, User
from server.auth.tokens import InvalidToken, decode_access_token
from server.db.base import utcnow
from server.http.problems import Forbidden, Unauthorized
from server.people.models import Patient

ACCESS_COOKIE = "telemed_access"
REFRESH_COOKIE = "telemed_refresh"
CSRF_COOKIE = "telemed_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: Role
    session_id: uuid.UUID
    amr: frozenset[str]
    full_name: str
    locale: str
    patient_id: uuid.UUID | None
    via_cookie: bool

    @property
    def has_second_factor(self) -> bool:
        return "otp" in self.amr


def check_access(principal: Principal, *, roles: Collection[Role] | None, allow_mfa_pending: bool,
                 admin_mfa_required: bool) -> None:
    """The one rule for API endpoints and pages alike: the right role, and admins with a second factor."""
    if roles is not None and principal.role not in roles:
        raise Forbidden("Your role may not use this", code="role_forbidden")
    if (principal.role is Role.admin and admin_mfa_required and not principal.has_second_factor
            and not allow_mfa_pending):
        raise Forbidden("Administrators must sign in with a second factor; set it up first", code="mfa_required")


def client_ip(request: web.Request) -> str | None:
    """The caller's address; with a trusted proxy, the entry that proxy appended to X-Forwarded-For.

    The leftmost entries are whatever the client sent and cannot be trusted; the rightmost one is
    what our own proxy saw.
    """
    if request.app[keys.settings].trust_forwarded_headers:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        if forwarded[-1]:
            return forwarded[-1]
    return request.remote


def audit_context(request: web.Request, principal: Principal | None = None) -> AuditContext:
    """The audit log's view of this request: actor, request id and the keyed hash of the address."""
    principal = principal if principal is not None else request.get(keys.PRINCIPAL)
    ip_key = request.app[keys.key_material].derive("audit-ip-hash")
    return AuditContext(
        actor_user_id=principal.user_id if principal else None,
        actor_role=principal.role.value if principal else None,
        request_id=request.get(keys.REQUEST_ID),
        ip_hash=hash_ip(ip_key, client_ip(request)),
    )


def _token_from(request: web.Request) -> tuple[str | None, bool]:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Use the Bearer scheme")
        return value.strip(), False
    return request.cookies.get(ACCESS_COOKIE), True


def check_csrf(request: web.Request) -> None:
    """Double-submit check for cookie-authenticated changes (SameSite=Strict is the first line)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie, sent):
        raise Forbidden("The CSRF token is missing or wrong", code="csrf_failed")


async def load_principal(request: web.Request, token: str, *, via_cookie: bool) -> Principal:
    """Verify `token` and that its account and session are still live; 401 otherwise."""
    settings = request.app[keys.settings]
    try:
        claims = decode_access_token(
            token, keys=request.app[keys.key_material].jwt, issuer=settings.jwt_issuer,
            audience=settings.jwt_audience, now=time.time(),
        )
    except InvalidToken:
        raise Unauthorized("The access token is not valid", code="invalid_token") from None
    async with request.app[keys.read_sessions]() as session:
        row = (await session.execute(
            select(User, AuthSession, Patient.id)
            .join(AuthSession, AuthSession.user_id == User.id)
            .outerjoin(Patient, Patient.user_id == User.id)
            .where(User.id == claims.user_id, AuthSession.id == claims.session_id)
        )).one_or_none()
    if row is None:
        raise Unauthorized("The access token is not valid", code="invalid_token")
    user, auth_session, patient_id = row
    if not user.is_active or auth_session.revoked_at is not None or auth_session.expires_at <= utcnow():
        raise Unauthorized("The session has ended", code="invalid_token")
    if user.role.value != claims.role:
        raise Unauthorized("The access token is not valid", code="invalid_token")
    return Principal(user.id, user.role, auth_session.id, claims.amr, user.full_name, user.locale,
                     patient_id, via_cookie)


async def authenticate(request: web.Request) -> Principal:
    """The caller, or 401. Cached on the request; cookie callers must pass CSRF on changes."""
    cached = request.get(keys.PRINCIPAL)
    if cached is not None:
        return cached
    token, via_cookie = _token_from(request)
    if not token:
        raise Unauthorized()
    principal = await load_principal(request, token, via_cookie=via_cookie)
    if via_cookie and request.method not in SAFE_METHODS:
        check_csrf(request)
    request[keys.PRINCIPAL] = principal
    return principal
