"""What a handler needs from the app in one line: a transaction, the clock, the audit context."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server import keys
from server.db.engine import reading, transaction


def tx(request: web.Request) -> AbstractAsyncContextManager[AsyncSession]:
    """A transaction on the app's database for this request; use when it writes (audit entries count)."""
    return transaction(request.app[keys.sessions])


def read(request: web.Request) -> AbstractAsyncContextManager[AsyncSession]:
    """A read-only session for this request: no write lock, nothing committed."""
    return reading(request.app[keys.read_sessions])
