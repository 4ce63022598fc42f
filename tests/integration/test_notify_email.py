"""SmtpSender against a real SMTP server (aiosmtpd) on 127.0.0.1: what arrives is what the patient gets."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from icalendar import Calendar

from server.notify.email import SmtpSender
from server.notify.errors import EmailDeliveryError
from server.notify.ics import invitation
from server.notify.messages import Message, compose
from tests.services import free_port
from tests.smtp import Sink, serve

STARTS_AT = dt.datetime(2027, 3, 12, 11, 20, tzinfo=dt.UTC)
ENDS_AT = STARTS_AT + dt.timedelta(minutes=20)
LINK = "https://telemed.clinic.example/c/3f2b8c1e-5d2a-4c6e-9a7b-1e2d3c4b5a69"
UID = "3f2b8c1e-5d2a-4c6e-9a7b-1e2d3c4b5a69@telemed.clinic.example"
PATIENT = "patient@example.org"
MAIL_FROM = "Клиника «Здоровье» <no-reply@clinic.example>"
EVENT_PROPERTIES = {
    "UID", "SEQUENCE", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "DESCRIPTION", "URL", "LOCATION", "CLASS",
    "STATUS", "ORGANIZER", "ATTENDEE",
}
MESSAGE_HEADERS = {
    "From", "To", "Subject", "Date", "Message-ID", "Content-Language", "Auto-Submitted",
    "X-Auto-Response-Suppress", "MIME-Version", "Content-Type",
}


@dataclass
class Authenticator:
    """Accepts one login and remembers who logged in."""

    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login, auth_data.password) == (b"clinic", b"s3cret")
        if ok:
            self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=ok, handled=False)  # handled=True would leave the client waiting for a reply


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def smtp_port(sink: Sink) -> Iterator[int]:
    yield from serve(sink)


def _sender(port: int, **overrides: Any) -> SmtpSender:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "sender": MAIL_FROM, "starttls": False,
                              "timeout": 5.0}
    values.update(overrides)
    return SmtpSender(**values)


def _message(kind: str = "booked") -> Message:
    return compose(kind, locale="ru", starts_at=STARTS_AT, time_zone="Europe/Moscow",
                   physician_name="Иванова Анна Петровна", link=LINK, clinic_name="Клиника «Здоровье»")


def _ics(message: Message, *, method: str, sequence: int) -> bytes:
    return invitation(uid=UID, sequence=sequence, method=method,  # type: ignore[arg-type]
                      starts_at=STARTS_AT, ends_at=ENDS_AT, summary=message.calendar_summary,
                      description=message.calendar_description, url=LINK, organizer_name="Клиника «Здоровье»",
                      organizer_email="no-reply@clinic.example", attendee_email=PATIENT)


def _received(envelope: Envelope) -> EmailMessage:
    assert isinstance(envelope.content, bytes)
    parsed = email.message_from_bytes(envelope.content, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _calendar_part(received: EmailMessage) -> EmailMessage:
    (part,) = [p for p in received.iter_attachments() if p.get_content_type() == "text/calendar"]
    return part


async def test_smtp_sender_delivers_russian_text_and_a_request_invitation(sink: Sink, smtp_port: int) -> None:
    message = _message("booked")

    ics = _ics(message, method="REQUEST", sequence=0)

    message_id = await _sender(smtp_port).send(to=PATIENT, message=message, ics=ics, ics_method="REQUEST")

    (envelope,) = sink.envelopes
    assert envelope.mail_from == "no-reply@clinic.example"
    assert envelope.rcpt_tos == [PATIENT]
    received = _received(envelope)
    assert set(received.keys()) == MESSAGE_HEADERS
    assert received["Message-ID"] == message_id
    assert received["From"] == MAIL_FROM
    assert received["To"] == PATIENT
    assert received["Subject"] == "Вы записаны на телеконсультацию"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["Content-Language"] == "ru"
    assert received.get_content_type() == "multipart/mixed"

    body = received.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content_charset() == "utf-8"
    assert body.get_content().replace("\r\n", "\n") == message.text
    assert "Когда: пятница, 12 марта 2027 г., 14:20 (Москва, UTC+3)" in body.get_content()

    part = _calendar_part(received)
    assert part.get_filename() == "invite.ics"
    assert part.get_param("method") == "REQUEST"
    assert part.get_content_charset() == "utf-8"
    assert part.get_payload(decode=True) == ics  # byte for byte, CRLF line ends and folding included
    calendar = Calendar.from_ical(part.get_content())
    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    # Exactly these fields and no others: the invitation has nowhere to put a reason for the visit.
    assert set(event) == EVENT_PROPERTIES
    assert event["UID"] == UID
    assert event.decoded("SEQUENCE") == 0
    assert event.decoded("DTSTART") == STARTS_AT
    assert event.decoded("DTSTART").utcoffset() == dt.timedelta(0)
    assert event.decoded("DTEND") == ENDS_AT
    assert event["STATUS"] == "CONFIRMED"
    assert str(event["SUMMARY"]) == "Телеконсультация: врач Иванова Анна Петровна"
    assert str(event["DESCRIPTION"]) == message.calendar_description
    assert str(event["ATTENDEE"]) == f"mailto:{PATIENT}"
    (alarm,) = event.walk("VALARM")
    assert alarm.decoded("TRIGGER") == -dt.timedelta(minutes=15)


async def test_smtp_sender_delivers_a_cancellation(sink: Sink, smtp_port: int) -> None:
    message = _message("cancelled")

    await _sender(smtp_port).send(to=PATIENT, message=message, ics=_ics(message, method="CANCEL", sequence=2),
                                  ics_method="CANCEL")

    received = _received(sink.envelopes[0])
    assert received["Subject"] == "Телеконсультация отменена"
    part = _calendar_part(received)
    assert part.get_param("method") == "CANCEL"
    calendar = Calendar.from_ical(part.get_content())
    assert calendar["METHOD"] == "CANCEL"
    (event,) = calendar.walk("VEVENT")
    assert set(event) == EVENT_PROPERTIES
    assert event["UID"] == UID  # the same entry the REQUEST created
    assert event.decoded("SEQUENCE") == 2
    assert event["STATUS"] == "CANCELLED"
    assert event.walk("VALARM") == []


async def test_smtp_sender_sends_a_reminder_without_invitation(sink: Sink, smtp_port: int) -> None:
    message = _message("reminder_24h")
    await _sender(smtp_port).send(to=PATIENT, message=message, ics=None, ics_method=None)
    received = _received(sink.envelopes[0])
    assert received.get_content_type() == "text/plain"
    assert received.get_content().replace("\r\n", "\n") == message.text


async def test_smtp_sender_logs_in(sink: Sink) -> None:
    authenticator = Authenticator()
    # AUTH offered without TLS only because this server is on 127.0.0.1 (SmtpSender refuses it for remote
    # hosts). Not auth_required: aiosmtpd warns about that combination, and the logins list proves the login.
    for port in serve(sink, authenticator=authenticator, auth_require_tls=False):
        await _sender(port, username="clinic", password="s3cret").send(
            to=PATIENT, message=_message(), ics=None, ics_method=None
        )
        with pytest.raises(EmailDeliveryError) as caught:
            await _sender(port, username="clinic", password="wrong").send(
                to=PATIENT, message=_message(), ics=None, ics_method=None
            )
    assert authenticator.logins == [(b"clinic", b"s3cret")]
    assert len(sink.envelopes) == 1
    assert caught.value.retryable is False
    assert caught.value.code == 535


@pytest.mark.parametrize(("reply", "retryable"), [("550 5.1.1 <patient@example.org>: no such user", False),
                                                  ("450 4.2.0 <patient@example.org>: greylisted", True)])
async def test_smtp_sender_refused_recipient_is_reported_without_the_address(
    sink: Sink, smtp_port: int, reply: str, retryable: bool
) -> None:
    sink.refuse_rcpt = reply
    with structlog.testing.capture_logs() as logs, pytest.raises(EmailDeliveryError) as caught:
        await _sender(smtp_port).send(to=PATIENT, message=_message(), ics=None, ics_method=None)
    assert caught.value.retryable is retryable
    assert caught.value.code == int(reply[:3])
    assert PATIENT not in str(caught.value)
    assert caught.value.__cause__ is None  # the server's reply, which may echo the address, stays out
    assert caught.value.__suppress_context__
    assert PATIENT not in repr(logs)
    assert sink.envelopes == []


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the cryptography library."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_smtp_sender_starttls_then_login(sink: Sink, tls_files: tuple[Path, Path]) -> None:
    cert_file, key_file = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))  # verifies the name 127.0.0.1 too
    authenticator = Authenticator()
    # The production shape: STARTTLS required before AUTH (aiosmtpd's default auth_require_tls=True).
    for port in serve(sink, authenticator=authenticator, tls_context=server_context, require_starttls=True):
        await _sender(port, starttls=True, tls_context=client_context, username="clinic", password="s3cret").send(
            to=PATIENT, message=_message(), ics=None, ics_method=None
        )
    assert authenticator.logins == [(b"clinic", b"s3cret")]
    assert _received(sink.envelopes[0])["Subject"] == "Вы записаны на телеконсультацию"


async def test_smtp_sender_implicit_tls(sink: Sink, tls_files: tuple[Path, Path]) -> None:
    cert_file, key_file = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    for port in serve(sink, ssl_context=server_context):  # TLS from the first byte, as on port 465
        await _sender(port, starttls=False, tls=True, tls_context=client_context).send(
            to=PATIENT, message=_message(), ics=None, ics_method=None
        )
    assert len(sink.envelopes) == 1


async def test_smtp_sender_starttls_refuses_an_untrusted_certificate(sink: Sink, tls_files: tuple[Path, Path]) -> None:
    cert_file, key_file = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    for port in serve(sink, tls_context=server_context, require_starttls=True):
        with pytest.raises(EmailDeliveryError) as caught:
            await _sender(port, starttls=True).send(to=PATIENT, message=_message(), ics=None, ics_method=None)
    assert caught.value.retryable is False  # a certificate does not become trusted by waiting
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert sink.envelopes == []


async def test_smtp_sender_requiring_starttls_never_falls_back_to_plain_text(sink: Sink, smtp_port: int) -> None:
    with pytest.raises(EmailDeliveryError) as caught:
        await _sender(smtp_port, starttls=True).send(to=PATIENT, message=_message(), ics=None, ics_method=None)
    assert caught.value.retryable is False
    assert sink.envelopes == []


async def test_smtp_sender_unreachable_server_is_retryable() -> None:
    with pytest.raises(EmailDeliveryError) as caught:
        await _sender(free_port(), timeout=2.0).send(to=PATIENT, message=_message(), ics=None, ics_method=None)
    assert caught.value.retryable is True
    assert caught.value.code is None
