"""Running one async unit of work from synchronous code (CLI commands, Celery tasks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.engine import create_engine, create_read_sessionmaker, create_sessionmaker, reading, transaction
from server.settings import Settings

T = TypeVar("T")


def run_async(work: Callable[[Settings], Coroutine[Any, Any, T]], settings: Settings | None = None) -> T:
    """Run `work` in its own event loop, for work that manages its own sessions."""
    return asyncio.run(work(settings or Settings()))


def run_in_session(work: Callable[[AsyncSession, Settings], Awaitable[T]], settings: Settings | None = None,
                   *, read_only: bool = False) -> T:
    """Run `work` in its own event loop, engine (NullPool) and transaction (or read-only session).

    Callers have no loop of their own; a fresh engine per run means no connection is shared across loops.
    """
    settings = settings or Settings()

    async def main() -> T:
        engine = create_engine(settings.resolved_database_url, null_pool=True)
        try:
            if read_only:
                async with reading(create_read_sessionmaker(engine)) as session:
                    return await work(session, settings)
            async with transaction(create_sessionmaker(engine)) as session:
                return await work(session, settings)
        finally:
            await engine.dispose()

    return asyncio.run(main())
