"""Celery adapters: sample completed consultations (every few minutes) and top the month up to its floor (daily)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import services
from server.celery_app import celery_app
from server.db.base import utcnow
from server.db.runner import run_in_session
from server.keyring import load_qa_secret
from server.settings import Settings


async def _sample(session: AsyncSession, settings: Settings) -> int:
    return await services.sample_pending(session, secret=load_qa_secret(settings),
                                         policy=services.policy_from(settings),
                                         zone=ZoneInfo(settings.clinic_time_zone), now=utcnow())


async def _top_up(session: AsyncSession, settings: Settings) -> int:
    month = utcnow().astimezone(ZoneInfo(settings.clinic_time_zone)).strftime("%Y-%m")
    return len(await services.top_up_month(session, month=month, policy=services.policy_from(settings),
                                           now=utcnow()))


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def sample_consultations() -> int:
    """Every completed consultation gets its one sampling decision; safe to run twice at once."""
    return run_in_session(_sample)


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def top_up_samples() -> int:
    """This month's physicians brought up to the floor (at least the rate of their consultations)."""
    return run_in_session(_top_up)
