"""Celery adapters for the audit log."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import services
from server.celery_app import celery_app
from server.db.runner import run_in_session
from server.keyring import load_audit_key
from server.settings import Settings


async def _checkpoint(session: AsyncSession, settings: Settings) -> str | None:
    key = load_audit_key(settings)
    path = await services.write_checkpoint(session, folder=settings.checkpoints_dir, key=key)
    return str(path) if path else None


@celery_app.task(acks_late=True, reject_on_worker_lost=True)
def write_audit_checkpoint() -> str | None:
    """Sign the chain's tip periodically, so later tampering has a fixed point to be caught against."""
    return run_in_session(_checkpoint)
