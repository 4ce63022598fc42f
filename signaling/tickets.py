"""Issuing and redeeming join tickets.

A ticket is 256 random bits, shown once to the caller of `POST .../join` and presented in the WebSocket's
first message (not in the URL, which proxies log). It is valid for seconds, bound to one consultation, user
and role (an account's or an invited guest's), and works once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from signaling.models import CallRole, JoinTicket


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(session: AsyncSession, *, consultation_id: uuid.UUID, user_id: uuid.UUID | None, role: CallRole,
                now: dt.datetime, ttl: dt.timedelta,
                invitation_id: uuid.UUID | None = None) -> tuple[str, JoinTicket]:
    """A ticket for an account (`user_id`) or, with `invitation_id` instead, for an invited guest."""
    token = secrets.token_urlsafe(32)
    ticket = JoinTicket(token_sha256=_digest(token), consultation_id=consultation_id, user_id=user_id,
                        invitation_id=invitation_id, role=role, created_at=now, expires_at=now + ttl)
    session.add(ticket)
    await session.flush()
    return token, ticket


async def redeem(session: AsyncSession, token: str, *, consultation_id: uuid.UUID,
                 now: dt.datetime) -> JoinTicket | None:
    """The ticket, claimed for this use; None if it is unknown, expired, used, or for another consultation."""
    if not 20 <= len(token) <= 100:
        return None
    claimed = await session.execute(
        update(JoinTicket)
        .where(JoinTicket.token_sha256 == _digest(token), JoinTicket.consultation_id == consultation_id,
               JoinTicket.used_at.is_(None), JoinTicket.expires_at > now)
        .values(used_at=now))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult for an UPDATE
        return None
    return (await session.scalars(select(JoinTicket).where(JoinTicket.token_sha256 == _digest(token)))).one()
