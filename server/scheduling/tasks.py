"""Celery adapters for scheduling: reminders, delivery and no-shows, run by beat every minute."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from server.celery_app import celery_app
from server.db.base import utcnow
from server.db.engine import create_engine, create_read_sessionmaker, create_sessionmaker
from server.db.runner import run_async, run_in_session
from server.notify import email_sender_from_settings, sms_gateway_from_settings
from server.scheduling import delivery, outbox, services
from server.settings import Settings


async def _no_shows(session: AsyncSession, settings: Settings) -> int:
    return len(await services.mark_no_shows(session, now=utcnow(), windows=services.Windows.from_settings(settings)))


async def _queue_reminders(session: AsyncSession, settings: Settings) -> int:
    return await outbox.queue_due_reminders(session, now=utcnow())


async def _deliver(settings: Settings) -> int:
    engine = create_engine(settings.resolved_database_url, null_pool=True)
    try:
        transports = delivery.Transports(email_sender_from_settings(settings), sms_gateway_from_settings(settings))
        return await delivery.deliver_pending(create_sessionmaker(engine), create_read_sessionmaker(engine),
                                              settings=settings, transports=transports, now=utcnow())
    finally:
        await engine.dispose()


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def mark_no_shows() -> int:
    """Consultations nobody checked in to after the grace period become no-shows."""
    return run_in_session(_no_shows)


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def send_notifications() -> int:
    """Queue due reminders, then send everything queued; safe to run twice (idempotency keys, claims)."""
    run_in_session(_queue_reminders)
    return run_async(_deliver)
