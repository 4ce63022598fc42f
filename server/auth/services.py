"""Signing in and out, refreshing, and the second factor. Each function runs in the caller's transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth import totp
from server.auth.issuer import TokenIssuer, TokenPair, hash_refresh_token
from server.auth.models import STAFF_ROLES, AuthSession, RefreshToken, User
from server.auth.passwords import Passwords
from server.http.problems import Conflict, Forbidden, ProblemError


class LoginFailure(StrEnum):
    bad_credentials = "bad_credentials"
    otp_required = "otp_required"


@dataclass(frozen=True)
class LoginResult:
    tokens: TokenPair | None
    user: User | None
    failure: LoginFailure | None = None

    @property
    def pair(self) -> TokenPair:
        """The tokens of a successful sign-in."""
        if self.tokens is None:
            raise ValueError(f"sign-in failed: {self.failure}")
        return self.tokens


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.scalars(select(User).where(User.email == email.strip().lower()))).one_or_none()


async def _start_session(session: AsyncSession, *, issuer: TokenIssuer, user: User, amr: list[str],
                         now: dt.datetime) -> TokenPair:
    auth_session = AuthSession(user_id=user.id, amr=" ".join(amr), created_at=now,
                               expires_at=now + issuer.refresh_ttl)
    session.add(auth_session)
    await session.flush()
    return await _issue_pair(session, issuer=issuer, user=user, auth_session=auth_session, now=now)


async def _issue_pair(session: AsyncSession, *, issuer: TokenIssuer, user: User, auth_session: AuthSession,
                      now: dt.datetime) -> TokenPair:
    refresh, refresh_hash = issuer.new_refresh_token()
    session.add(RefreshToken(session_id=auth_session.id, token_hash=refresh_hash, issued_at=now,
                             expires_at=auth_session.expires_at))
    access = issuer.access_token(user_id=user.id, session_id=auth_session.id, role=user.role.value,
                                 amr=auth_session.amr.split(), now=now)
    return TokenPair(access, refresh, issuer.access_ttl_seconds, auth_session.id)


@dataclass(frozen=True)
class PasswordCheck:
    user_id: uuid.UUID | None  # the active account the e-mail names, if any
    correct: bool
    new_hash: str | None = None  # the password re-hashed at current cost, when the stored one is older


async def check_password(session: AsyncSession, *, passwords: Passwords, email: str, password: str) -> PasswordCheck:
    """Read-only, and slow by design (argon2id): run it outside any write transaction.

    An unknown e-mail costs the same time as a wrong password.
    """
    user = await find_user_by_email(session, email)
    active = user is not None and user.is_active
    correct = await passwords.verify(user.password_hash if active and user else None, password)
    if not (correct and user is not None):
        return PasswordCheck(user.id if active and user else None, False)
    new_hash = await passwords.hash(password) if passwords.needs_rehash(user.password_hash) else None
    return PasswordCheck(user.id, True, new_hash)


async def _claim_totp_step(session: AsyncSession, user_id: uuid.UUID, step: int) -> bool:
    """Record `step` as used only if no later or equal step was: one code, one sign-in, even when
    several requests race (a conditional UPDATE, atomic on PostgreSQL and SQLite alike)."""
    claimed = await session.execute(
        update(User).where(User.id == user_id,
                           or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step).returning(User.id).execution_options(synchronize_session=False)
    )
    return claimed.one_or_none() is not None


async def login(session: AsyncSession, *, check: PasswordCheck, issuer: TokenIssuer, totp_key: bytes,
                otp: str | None, ctx: AuditContext, now: dt.datetime,
                retired_totp_keys: Sequence[bytes] = ()) -> LoginResult:
    """After `check_password`: the second factor where enrolled, then a new session and its tokens.

    Every failure looks the same to the caller, whether the account exists or not. A second factor's secret
    still under a retired master key (`retired_totp_keys`) opens, and is re-encrypted under the current one.
    """
    user = await session.get(User, check.user_id) if check.user_id else None
    if not check.correct or user is None or not user.is_active:
        await audit.record(session, ctx=ctx, action="auth.login", object_type="user", object_id=check.user_id,
                           outcome="failure", detail={"reason": "bad_credentials"}, now=now)
        return LoginResult(None, None, LoginFailure.bad_credentials)
    amr = ["pwd"]
    if user.totp_enabled_at is not None and user.totp_secret_encrypted is not None:
        if not otp:
            return LoginResult(None, user, LoginFailure.otp_required)
        secret, under = totp.decrypt_with_any([totp_key, *retired_totp_keys], user.totp_secret_encrypted,
                                              user_id=user.id.bytes)
        step = totp.matching_step(secret, otp, now=now, last_step=user.totp_last_step)
        if step is None or not await _claim_totp_step(session, user.id, step):
            await audit.record(session, ctx=ctx, action="auth.login", object_type="user", object_id=user.id,
                               outcome="failure", detail={"reason": "bad_otp"}, now=now)
            return LoginResult(None, user, LoginFailure.bad_credentials)
        if under > 0:  # encrypted before the master key was rotated
            user.totp_secret_encrypted = totp.encrypt_secret(totp_key, secret, user_id=user.id.bytes)
        amr.append("otp")
    if check.new_hash is not None:
        user.password_hash = check.new_hash
    user.last_login_at = now
    tokens = await _start_session(session, issuer=issuer, user=user, amr=amr, now=now)
    await audit.record(session, ctx=ctx.acting_as(user.id, user.role.value), action="auth.login",
                       object_type="user", object_id=user.id, detail={"amr": amr}, now=now)
    return LoginResult(tokens, user)


class RefreshRefused(StrEnum):
    unknown = "unknown"
    reused = "reused"
    raced = "raced"  # spent moments ago by a parallel request of the same client: refused, not revoked
    ended = "ended"



async def refresh(session: AsyncSession, *, issuer: TokenIssuer, refresh_token: str, ctx: AuditContext,
                  now: dt.datetime) -> TokenPair | RefreshRefused:
    """Spend a refresh token for a new pair. Spending one twice ends its whole session (RFC 6819 5.2.2.3).

    Refusals are returned, not raised, so the revocation they cause is committed.
    """
    token_hash = hash_refresh_token(refresh_token)
    spent = await session.execute(
        update(RefreshToken).where(RefreshToken.token_hash == token_hash, RefreshToken.spent_at.is_(None))
        .values(spent_at=now).returning(RefreshToken.session_id, RefreshToken.expires_at)
        .execution_options(synchronize_session=False)
    )
    row = spent.one_or_none()
    if row is None:
        reused = (await session.execute(select(RefreshToken.session_id, RefreshToken.spent_at)
                                        .where(RefreshToken.token_hash == token_hash))).one_or_none()
        if reused is None:
            return RefreshRefused.unknown
        if reused.spent_at is not None and now - reused.spent_at <= issuer.refresh_race_window:
            return RefreshRefused.raced
        auth_session = await session.get(AuthSession, reused.session_id)
        if auth_session is not None and auth_session.revoked_at is None:
            auth_session.revoked_at, auth_session.revoked_reason = now, "refresh_reuse"
            user = await session.get(User, auth_session.user_id)
            await audit.record(session, ctx=ctx.acting_as(user.id, user.role.value) if user else ctx,
                               action="auth.refresh_reuse", object_type="auth_session",
                               object_id=auth_session.id, outcome="failure", now=now)
        return RefreshRefused.reused
    session_id, expires_at = row
    auth_session = await session.get(AuthSession, session_id)
    user = await session.get(User, auth_session.user_id) if auth_session else None
    if (auth_session is None or user is None or auth_session.revoked_at is not None or expires_at <= now
            or not user.is_active):
        return RefreshRefused.ended
    return await _issue_pair(session, issuer=issuer, user=user, auth_session=auth_session, now=now)


async def logout(session: AsyncSession, *, session_id: uuid.UUID, ctx: AuditContext, now: dt.datetime) -> None:
    """End the session: its refresh tokens and every access token carrying its id stop working."""
    auth_session = await session.get(AuthSession, session_id)
    if auth_session is None or auth_session.revoked_at is not None:
        return
    auth_session.revoked_at, auth_session.revoked_reason = now, "logout"
    await audit.record(session, ctx=ctx, action="auth.logout", object_type="auth_session",
                       object_id=session_id, now=now)


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str


async def begin_totp(session: AsyncSession, *, user_id: uuid.UUID, totp_key: bytes) -> TotpEnrolment:
    """Give a staff member a new secret to scan; it counts only once a code from it is confirmed."""
    user = await session.get(User, user_id)
    if user is None or user.role not in STAFF_ROLES:
        raise Forbidden("A second factor is offered to staff accounts", code="mfa_not_available")
    if user.totp_enabled_at is not None:
        raise Conflict("A second factor is already set up for this account", code="mfa_already_enabled")
    if user.totp_secret_encrypted is not None:  # a reload shows the secret already added to the app
        secret = totp.decrypt_secret(totp_key, user.totp_secret_encrypted, user_id=user.id.bytes)
    else:
        secret = totp.new_secret()
        user.totp_secret_encrypted = totp.encrypt_secret(totp_key, secret, user_id=user.id.bytes)
    return TotpEnrolment(secret, totp.provisioning_uri(secret, user.email))


async def confirm_totp(session: AsyncSession, *, issuer: TokenIssuer, user_id: uuid.UUID, session_id: uuid.UUID,
                       code: str, totp_key: bytes, ctx: AuditContext, now: dt.datetime) -> str:
    """Enable the factor on a correct code; the current session now counts as two-factor."""
    user = await session.get(User, user_id)
    auth_session = await session.get(AuthSession, session_id)
    if user is None or auth_session is None or user.totp_secret_encrypted is None:
        raise Conflict("Start the set-up first", code="mfa_not_started")
    if user.totp_enabled_at is not None:
        raise Conflict("A second factor is already set up for this account", code="mfa_already_enabled")
    secret = totp.decrypt_secret(totp_key, user.totp_secret_encrypted, user_id=user.id.bytes)
    step = totp.matching_step(secret, code, now=now, last_step=user.totp_last_step)
    if step is None or not await _claim_totp_step(session, user.id, step):
        raise ProblemError("The code does not match; check the device's clock and try again",
                           status=422, code="bad_otp", title="Wrong code")
    user.totp_enabled_at = now
    auth_session.amr = "pwd otp"
    await audit.record(session, ctx=ctx, action="auth.mfa_enabled", object_type="user", object_id=user.id, now=now)
    return issuer.access_token(user_id=user.id, session_id=auth_session.id, role=user.role.value,
                               amr=["pwd", "otp"], now=now)

