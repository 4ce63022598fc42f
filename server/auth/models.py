"""Accounts and their sign-in sessions."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class Role(StrEnum):
    patient = "patient"
    physician = "physician"
    qa_expert = "qa_expert"
    admin = "admin"


STAFF_ROLES = frozenset({Role.physician, Role.qa_expert, Role.admin})


class User(Base):
    """Anyone who signs in. Role-specific data lives in `people` (patients, physicians, QA experts)."""

    __tablename__ = "users"

    id: Mapped[uuid_pk]
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16, validate_strings=True))
    full_name: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(5), default="ru")
    is_active: Mapped[bool] = mapped_column(default=True)
    totp_secret_encrypted: Mapped[bytes | None] = mapped_column(default=None)
    totp_enabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    totp_last_step: Mapped[int | None] = mapped_column(default=None)  # a code is accepted once
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AuthSession(Base):
    """One sign-in: its refresh tokens form a family, and its access tokens carry its id as `sid`.

    Revoking the session (logout, refresh-token reuse) ends every token issued under it at once.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[uuid_pk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amr: Mapped[str] = mapped_column(String(32))  # "pwd" or "pwd otp" (RFC 8176 values)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), default=None)


class RefreshToken(Base):
    """An opaque refresh token, kept only as its SHA-256; each is spent by one refresh."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_session_id", "session_id"),)

    id: Mapped[uuid_pk]
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    spent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
