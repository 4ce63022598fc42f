"""Celery adapters: give new samples to experts (every few minutes) and remind overdue reviews (daily)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import assignment, reminders
from server.celery_app import celery_app
from server.db.base import utcnow
from server.db.runner import run_in_session
from server.notify import email_sender_from_settings
from server.settings import Settings


async def _assign(session: AsyncSession, settings: Settings) -> int:
    return len(await assignment.assign_pending(session, settings=settings, now=utcnow()))


async def _remind(session: AsyncSession, settings: Settings) -> int:
    return await reminders.remind(session, sender=email_sender_from_settings(settings), settings=settings,
                                  now=utcnow())


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def assign_reviews() -> int:
    """Every sampled consultation without a review goes to the least loaded eligible expert."""
    return run_in_session(_assign)


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def remind_overdue_reviews() -> int:
    """Experts with reviews past their due date get one e-mail a day."""
    return run_in_session(_remind)
