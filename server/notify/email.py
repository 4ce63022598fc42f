"""Sending a notice by e-mail: through SMTP, or into the development outbox as .eml files.

Addresses are personal data: they are never logged and never put into an exception's message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog
from pydantic import SecretStr

from server.notify.errors import EmailDeliveryError, NotifyConfigurationError
from server.notify.hosts import is_loopback
from server.notify.messages import Message
from server.notify.outbox import write_private_file
from server.settings import Settings

log = structlog.get_logger("telemed.notify")

ICS_METHODS = ("REQUEST", "CANCEL")


class EmailSender(Protocol):
    async def send(self, *, to: str, message: Message, ics: bytes | None, ics_method: str | None) -> str:
        """Hand one notice over for delivery; returns its Message-ID."""
        ...


def build_email(
    *,
    sender: str,
    to: str,
    message: Message,
    ics: bytes | None,
    ics_method: str | None,
    now: dt.datetime | None = None,
) -> EmailMessage:
    """The MIME message: a UTF-8 text/plain body and, if given, the invitation as text/calendar (invite.ics)."""
    if (ics is None) != (ics_method is None):
        raise ValueError("ics and ics_method go together")
    if ics_method is not None and ics_method not in ICS_METHODS:
        raise ValueError("ics_method must be REQUEST or CANCEL")
    sender_address = parseaddr(sender)[1]
    if "@" not in sender_address:
        raise ValueError("sender must contain an e-mail address")
    _check_recipient(to)

    email = EmailMessage(policy=SMTP_POLICY)
    email["From"] = sender
    email["To"] = to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    email["Message-ID"] = make_msgid(domain=sender_address.rpartition("@")[2])
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a notice
    email["X-Auto-Response-Suppress"] = "All"  # the same for Exchange
    email.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if ics is not None and ics_method is not None:
        # base64 keeps the CRLF line ends and folding of the .ics byte for byte.
        email.add_attachment(ics, maintype="text", subtype="calendar", filename="invite.ics",
                             params={"method": ics_method, "charset": "utf-8"})
    email["Content-Language"] = message.language  # after the content: set_content drops Content-* headers
    return email


class SmtpSender:
    """Sends through an SMTP server (submission with STARTTLS, or implicit TLS), with optional login."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool = True,
        tls: bool = False,
        username: str | None = None,
        password: SecretStr | str | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if starttls and tls:
            raise NotifyConfigurationError("choose STARTTLS or implicit TLS, not both")
        if (username is None) != (password is None):
            raise NotifyConfigurationError("SMTP username and password go together")
        if username is not None and not (starttls or tls) and not is_loopback(host):
            raise NotifyConfigurationError("refusing to send SMTP credentials unencrypted to a remote host")
        self._host, self._port, self._sender = host, port, sender
        self._starttls, self._tls = starttls, tls
        self._username = username
        self._password = password.get_secret_value() if isinstance(password, SecretStr) else password
        self._timeout = timeout
        self._tls_context = tls_context

    async def send(self, *, to: str, message: Message, ics: bytes | None, ics_method: str | None) -> str:
        """Deliver to the SMTP server; raises `EmailDeliveryError` (with `retryable`) when it is not accepted."""
        email = build_email(sender=self._sender, to=to, message=message, ics=ics, ics_method=ics_method)
        try:
            await aiosmtplib.send(
                email,
                sender=parseaddr(self._sender)[1],
                recipients=[to],
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._tls,
                start_tls=self._starttls,  # True: STARTTLS or fail, never a silent fallback to plain text
                tls_context=self._tls_context,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPException as exc:
            # The server's reply text often repeats the address: keep only the code, and drop the chain.
            raise _delivery_error(exc) from None
        except ssl.SSLCertVerificationError as exc:  # aiosmtplib lets TLS errors through unwrapped
            raise EmailDeliveryError("SMTP server certificate not trusted", retryable=False) from exc
        except OSError as exc:
            raise EmailDeliveryError(f"SMTP connection failed ({type(exc).__name__})", retryable=True) from exc
        message_id = str(email["Message-ID"])
        log.info("notify.email.sent", transport="smtp", message_id=message_id)
        return message_id


class OutboxSender:
    """Development default: each message becomes `<outbox>/email/<time>-<random>.eml` (0600, folder 0700)."""

    def __init__(self, outbox_dir: Path, *, sender: str) -> None:
        self.folder = outbox_dir / "email"
        self._sender = sender

    async def send(self, *, to: str, message: Message, ics: bytes | None, ics_method: str | None) -> str:
        """Write the message as it would go over SMTP; returns its Message-ID."""
        email = build_email(sender=self._sender, to=to, message=message, ics=ics, ics_method=ics_method)
        path = await asyncio.to_thread(write_private_file, self.folder, suffix=".eml", data=email.as_bytes())
        message_id = str(email["Message-ID"])
        log.info("notify.email.sent", transport="outbox", message_id=message_id, file=path.name)
        return message_id


def email_sender_from_settings(settings: Settings) -> EmailSender:
    """SMTP when `smtp_host` is set; otherwise the outbox, which production refuses (patients would get nothing)."""
    if settings.smtp_host is None:
        if settings.is_production:
            raise NotifyConfigurationError("TELEMED_SMTP_HOST must be set in production")
        return OutboxSender(settings.outbox_dir, sender=settings.mail_from)
    return SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        starttls=settings.smtp_starttls and not settings.smtp_tls,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=settings.smtp_password,
    )


def _check_recipient(to: str) -> None:
    # One bare address: a display name or a list would put more into the header than the caller meant.
    local, at, domain = to.partition("@")
    if not (local and at and domain) or "@" in domain or any(c.isspace() or c in ",;<>\"()" for c in to):
        raise ValueError("to must be a single bare e-mail address")


def _delivery_error(exc: aiosmtplib.SMTPException) -> EmailDeliveryError:
    kind = type(exc).__name__
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in exc.recipients]
        temporary = bool(codes) and all(400 <= code < 500 for code in codes)
        return EmailDeliveryError(f"SMTP refused the recipient ({kind}, codes {codes})", retryable=temporary,
                                  code=codes[0] if codes else None)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 4xx: try again later (greylisting, full queue, auth backend down); 5xx: it will fail the same way.
        return EmailDeliveryError(f"SMTP refused the message ({kind}, code {exc.code})",
                                  retryable=400 <= exc.code < 500, code=exc.code)
    if isinstance(exc, ConnectionError | TimeoutError):  # refused, dropped, timed out
        return EmailDeliveryError(f"SMTP server unreachable ({kind})", retryable=True)
    # The server lacks what the settings require (STARTTLS, AUTH, SMTPUTF8): no retry will change that.
    return EmailDeliveryError(f"SMTP server does not support the configured exchange ({kind})", retryable=False)
