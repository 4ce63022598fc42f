"""Queueing the messages a consultation's life produces, each exactly once.

Every message gets an idempotency key naming what it is about (the consultation, the kind, the channel
and the version of the booking it describes), stored unique: queueing it again, from a retried task or
a second worker, finds the row already there and adds nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.people.models import Patient
from server.scheduling.models import Consultation, ConsultationStatus, Notification, NotificationStatus

REMINDERS = {"reminder_24h": dt.timedelta(hours=24), "reminder_1h": dt.timedelta(hours=1)}


def idempotency_key(consultation: Consultation, kind: str, channel: str) -> str:
    # Reminders are keyed by the start time, so a rescheduled consultation is reminded again;
    # booking messages by the booking's version, so each change is announced once.
    version = consultation.starts_at.isoformat() if kind in REMINDERS else str(consultation.sequence)
    return f"{consultation.id}:{kind}:{channel}:{version}"


async def enqueue(session: AsyncSession, *, consultation: Consultation, kind: str, now: dt.datetime) -> list[str]:
    """Queue `kind` on each channel the patient chose; returns the keys queued now (not before)."""
    patient = await session.get(Patient, consultation.patient_id)
    if patient is None:
        return []
    channels = [name for name, wanted in (("email", patient.notify_email), ("sms", patient.notify_sms)) if wanted]
    queued = []
    for channel in channels:
        key = idempotency_key(consultation, kind, channel)
        if (await session.scalars(select(Notification.id).where(Notification.idempotency_key == key))).first():
            continue
        try:
            async with session.begin_nested():
                session.add(Notification(consultation_id=consultation.id, kind=kind, channel=channel,
                                         sequence=consultation.sequence, idempotency_key=key, created_at=now))
                await session.flush()
        except IntegrityError:
            continue  # queued by someone else in the meantime: exactly what the key is for
        queued.append(key)
    return queued


async def queue_due_reminders(session: AsyncSession, *, now: dt.datetime) -> int:
    """Queue the 24-hour and 1-hour reminders now due. A booking made inside a reminder's window does not
    get that reminder (the booking confirmation just told the patient)."""
    horizon = now + max(REMINDERS.values())
    upcoming = (await session.scalars(select(Consultation).where(
        Consultation.status == ConsultationStatus.scheduled, Consultation.needs_reschedule.is_(False),
        Consultation.starts_at > now, Consultation.starts_at <= horizon))).all()
    queued = 0
    for consultation in upcoming:
        # Only the closest reminder now due: after a late booking, a move or a pause of the job, a
        # 24-hour reminder three hours before the start would only confuse.
        due = [(kind, consultation.starts_at - before) for kind, before in REMINDERS.items()
               if consultation.starts_at - before <= now]
        if not due:
            continue
        kind, due_from = min(due, key=lambda item: consultation.starts_at - item[1])
        if consultation.created_at < due_from:
            queued += len(await enqueue(session, consultation=consultation, kind=kind, now=now))
    return queued


MAX_ATTEMPTS = 5


async def claim(session: AsyncSession, *, now: dt.datetime, limit: int = 50,
                stale_after: dt.timedelta = dt.timedelta(minutes=10)) -> list[uuid.UUID]:
    """Take pending messages for sending (and ones a crashed worker left half-sent long ago).

    The conditional UPDATE is the claim: two workers running at once never take the same message.
    """
    candidates = (await session.scalars(select(Notification.id).where(or_(
        Notification.status == NotificationStatus.pending,
        (Notification.status == NotificationStatus.sending) & (Notification.claimed_at < now - stale_after),
    ), Notification.attempts < MAX_ATTEMPTS).order_by(Notification.created_at).limit(limit))).all()
    claimed = []
    for notification_id in candidates:
        taken = await session.execute(
            update(Notification).where(Notification.id == notification_id, or_(
                Notification.status == NotificationStatus.pending,
                (Notification.status == NotificationStatus.sending) & (Notification.claimed_at < now - stale_after)))
            .values(status=NotificationStatus.sending, claimed_at=now, attempts=Notification.attempts + 1)
            .returning(Notification.id).execution_options(synchronize_session=False))
        if taken.one_or_none() is not None:
            claimed.append(notification_id)
    return claimed
