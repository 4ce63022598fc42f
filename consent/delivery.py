"""Sending a signing code to the patient, after the transaction that created it has committed.

The message holds the code and nothing else (no name, no document): an SMS is read on a lock screen.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consent import signing
from consent.models import OtpChannel
from consent.problems import CodeNotSent
from consent.setup import ConsentSetup
from consent.signing import CodeToSend
from server.db.engine import transaction
from server.notify import DeliveryError, Message

log = structlog.get_logger("telemed.consent")


def code_message(language: str, code: str, minutes: int, clinic: str) -> Message:
    if language == "ru":
        text = f"Код для подписания согласия: {code}. Действует {minutes} мин. Никому его не сообщайте. {clinic}"
        subject = "Код для подписания согласия"
    else:
        text = f"Your code to sign the consent: {code}. Valid for {minutes} min. Never share it. {clinic}"
        subject = "Your code to sign the consent"
    return Message(language=language, subject=subject, text=text, sms=text, calendar_summary="",
                   calendar_description="")


async def send_code(setup: ConsentSetup, sending: CodeToSend, *, language: str,
                    sessions: async_sessionmaker[AsyncSession]) -> None:
    """Deliver the code; if it cannot go, forget it (`CodeNotSent`, 503), so it neither uses up the patient's
    hourly allowance nor displaces the code they already hold (only the newest code signs)."""
    try:
        await deliver_code(setup, sending, language=language)
    except CodeNotSent:
        async with transaction(sessions) as session:
            await signing.forget_code(session, otp_id=sending.otp.id)
        raise


async def deliver_code(setup: ConsentSetup, sending: CodeToSend, *, language: str) -> None:
    """Hand the code to the e-mail or SMS transport; `CodeNotSent` (503) when it could not go."""
    message = code_message(language, sending.code, int(setup.otp_ttl.total_seconds() // 60), setup.clinic_name)
    try:
        if sending.channel is OtpChannel.email and setup.email is not None:
            await setup.email.send(to=sending.destination, message=message, ics=None, ics_method=None)
        elif sending.channel is OtpChannel.sms and setup.sms is not None:
            await setup.sms.send(to=sending.destination, text=message.sms)
        else:
            raise CodeNotSent()
    except DeliveryError as error:
        log.warning("consent.code_not_sent", channel=sending.channel.value, reason=str(error))
        raise CodeNotSent() from None
