"""Celery adapters: sample completed consultations (every few minutes) and top months up to their floor (daily)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import services
from server.celery_app import celery_app
from server.db.base import utcnow
from server.db.runner import run_in_session
from server.keyring import load_qa_secrets
from server.settings import Settings


async def _sample(session: AsyncSession, settings: Settings) -> int:
    return await services.sample_pending(session, secrets=load_qa_secrets(settings),
                                         policy=services.policy_from(settings),
                                         zone=ZoneInfo(settings.clinic_time_zone), now=utcnow())


async def _top_up(session: AsyncSession, settings: Settings) -> int:
    added = await services.top_up_due(session, policy=services.policy_from(settings),
                                      zone=ZoneInfo(settings.clinic_time_zone), now=utcnow())
    return sum(len(consultations) for consultations in added.values())


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def sample_consultations() -> int:
    """Every completed consultation gets its one sampling decision; safe to run twice at once."""
    return run_in_session(_sample)


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def top_up_samples() -> int:
    """Physicians brought up to the floor (at least the rate of their consultations) for this month and, in the
    first days of a month, the previous one, so its floor holds at the month's end."""
    return run_in_session(_top_up)
