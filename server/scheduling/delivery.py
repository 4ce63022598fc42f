"""Sending the queued messages: claim in a short transaction, send outside it, then record the result.

The database is never locked while a mail server or SMS gateway is slow. A message is sent at most
once unless a worker dies between sending and recording (then, after `stale_after`, once more: the
only duplicate possible, and the safer side for a reminder).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.models import User
from server.db.engine import reading, transaction
from server.notify import DeliveryError, EmailSender, SmsGateway, compose, consultation_uid, invitation
from server.people.models import Patient, Physician
from server.scheduling import outbox
from server.scheduling.models import Consultation, ConsultationStatus, Notification, NotificationStatus
from server.settings import Settings

log = structlog.get_logger("telemed.notifications")
MAX_ATTEMPTS = outbox.MAX_ATTEMPTS
CALENDAR_METHODS = {"booked": "REQUEST", "changed": "REQUEST", "cancelled": "CANCEL"}


@dataclass(frozen=True)
class Transports:
    email: EmailSender
    sms: SmsGateway


@dataclass(frozen=True)
class _Parcel:
    notification: Notification
    consultation: Consultation
    patient: Patient
    patient_user: User
    physician: Physician
    physician_name: str


async def _load(session: AsyncSession, notification_id: uuid.UUID) -> _Parcel | None:
    notification = await session.get(Notification, notification_id)
    consultation = await session.get(Consultation, notification.consultation_id) if notification else None
    patient = await session.get(Patient, consultation.patient_id) if consultation else None
    physician = await session.get(Physician, consultation.physician_id) if consultation else None
    if not (notification and consultation and patient and physician):
        return None
    patient_user = await session.get(User, patient.user_id)
    physician_user = await session.get(User, physician.user_id)
    if patient_user is None or physician_user is None:
        return None
    return _Parcel(notification, consultation, patient, patient_user, physician, physician_user.full_name)


async def _send(parcel: _Parcel, *, settings: Settings, transports: Transports) -> str:
    consultation, kind = parcel.consultation, parcel.notification.kind
    link = f"{settings.public_url.rstrip('/')}/my/consultations/{consultation.id}"
    # Shown in the physician's zone: the clinic's local time, which is what its patients live by.
    message = compose(kind, locale=parcel.patient_user.locale, starts_at=consultation.starts_at,
                      time_zone=parcel.physician.time_zone, physician_name=parcel.physician_name, link=link,
                      clinic_name=settings.clinic_name)
    if parcel.notification.channel == "sms":
        return await transports.sms.send(to=parcel.patient.phone, text=message.sms)
    method = CALENDAR_METHODS.get(kind)
    ics = None
    if method is not None:
        ics = invitation(uid=consultation_uid(consultation.id, public_url=settings.public_url),
                         sequence=parcel.notification.sequence, method=method,  # type: ignore[arg-type]
                         starts_at=consultation.starts_at, ends_at=consultation.ends_at,
                         summary=message.calendar_summary, description=message.calendar_description, url=link,
                         organizer_name=settings.clinic_name, organizer_email=_address(settings.mail_from),
                         attendee_email=parcel.patient_user.email)
    return await transports.email.send(to=parcel.patient_user.email, message=message, ics=ics, ics_method=method)


def _outdated(parcel: _Parcel) -> bool:
    """A reminder whose consultation was cancelled or moved since it was queued is not sent."""
    if parcel.notification.kind not in outbox.REMINDERS:
        return False
    current = outbox.idempotency_key(parcel.consultation, parcel.notification.kind, parcel.notification.channel)
    return parcel.consultation.status is not ConsultationStatus.scheduled or \
        current != parcel.notification.idempotency_key


def _address(mail_from: str) -> str:
    return mail_from.rsplit("<", 1)[-1].rstrip(">").strip() if "<" in mail_from else mail_from.strip()


async def deliver_pending(sessions: async_sessionmaker[AsyncSession], read_sessions: async_sessionmaker[AsyncSession],
                          *, settings: Settings, transports: Transports, now: dt.datetime) -> int:
    """Send what is queued; returns how many were handed over."""
    async with transaction(sessions) as session:
        claimed = await outbox.claim(session, now=now)
    sent = 0
    for notification_id in claimed:
        async with reading(read_sessions) as session:
            parcel = await _load(session, notification_id)
        status, error = NotificationStatus.failed, "MissingData"
        if parcel is not None and _outdated(parcel):
            status, error = NotificationStatus.failed, "Outdated"  # a reminder for a time that no longer holds
        elif parcel is not None:
            try:
                await _send(parcel, settings=settings, transports=transports)
                status, error = NotificationStatus.sent, ""
                sent += 1
            except DeliveryError as exc:
                retry = exc.retryable and parcel.notification.attempts < MAX_ATTEMPTS
                status = NotificationStatus.pending if retry else NotificationStatus.failed
                error = type(exc).__name__  # the class only: messages may not name the recipient
            except Exception as exc:  # one bad message must not stop the others
                log.exception("notification_failed", notification_id=str(notification_id))
                status, error = NotificationStatus.failed, type(exc).__name__
        async with transaction(sessions) as session:
            notification = await session.get(Notification, notification_id)
            if notification is not None:
                notification.status = status
                notification.last_error = error or None
                if status is NotificationStatus.sent:
                    notification.sent_at = now
    return sent
