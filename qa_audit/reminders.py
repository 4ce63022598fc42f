"""Telling experts about their overdue reviews, by e-mail, once a day. The mail names no patient and no
consultation: only how many reviews are overdue and where the queue is."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import reviews
from server.auth.models import User
from server.notify import EmailSender
from server.notify.messages import Message
from server.people.models import QaExpert
from server.settings import Settings

log = structlog.get_logger(__name__)

_TEXTS = {
    "en": ("Overdue QA reviews: {count}",
           "You have {count} QA review(s) past their due date.\nYour queue: {link}\n"),
    "ru": ("Просроченные проверки качества: {count}",
           "У вас просроченных проверок качества: {count}.\nВаша очередь: {link}\n"),
}


def reminder(*, language: str, count: int, link: str) -> Message:
    subject, text = _TEXTS.get(language, _TEXTS["en"])
    return Message(language=language, subject=subject.format(count=count), text=text.format(count=count, link=link),
                   sms="", calendar_summary="", calendar_description="")


async def remind(session: AsyncSession, *, sender: EmailSender, settings: Settings, now: dt.datetime) -> int:
    """Mark today's overdue reviews reminded and mail each expert once; how many experts were mailed. A mail
    that fails is logged and tried again tomorrow: the queue shows the overdue reviews meanwhile."""
    due = await reviews.remind_overdue(session, settings=settings, now=now)
    counts: Counter[uuid.UUID] = Counter(review.expert_id for review in due)
    mailed = 0
    for expert_id, count in counts.items():
        user = (await session.execute(select(User.email, User.locale).join(QaExpert, QaExpert.user_id == User.id)
                                      .where(QaExpert.id == expert_id))).one_or_none()
        if user is None:
            continue
        try:
            await sender.send(to=user.email, message=reminder(language=user.locale, count=count,
                                                             link=f"{settings.public_url}/qa/queue"),
                              ics=None, ics_method=None)
            mailed += 1
        except Exception as error:  # one expert's mailbox must not stop the others' reminders
            log.warning("qa.reminder_failed", expert_id=str(expert_id), error=type(error).__name__)
    return mailed
