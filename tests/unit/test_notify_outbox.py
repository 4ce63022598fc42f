"""The development outbox (private, atomic files) and choosing transports from settings."""

from __future__ import annotations

import datetime as dt
import email
import json
import stat
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from server.notify.email import OutboxSender, SmtpSender, build_email, email_sender_from_settings
from server.notify.errors import NotifyConfigurationError
from server.notify.ics import invitation
from server.notify.messages import Message, compose
from server.notify.sms import OutboxSmsGateway, WebhookSmsGateway, sms_gateway_from_settings
from server.settings import Settings

STARTS_AT = dt.datetime(2027, 3, 12, 11, 20, tzinfo=dt.UTC)
PHONE = "+79991234567"


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "test", "data_dir": tmp_path / "var", "smtp_host": None, "sms_webhook_url": None}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def _message() -> Message:
    return compose("booked", locale="ru", starts_at=STARTS_AT, time_zone="Europe/Moscow",
                   physician_name="Иванова Анна Петровна", link="https://telemed.clinic.example/c/1",
                   clinic_name="Клиника «Здоровье»")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_outbox_sender_writes_a_private_eml(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    sender = OutboxSender(outbox, sender="Клиника <no-reply@clinic.example>")
    ics = invitation(uid="u@clinic.example", sequence=0, method="REQUEST", starts_at=STARTS_AT,
                     ends_at=STARTS_AT + dt.timedelta(minutes=20), summary="s", description="d",
                     url="https://telemed.clinic.example/c/1", organizer_name="Клиника",
                     organizer_email="no-reply@clinic.example")

    message_id = await sender.send(to="patient@example.org", message=_message(), ics=ics, ics_method="REQUEST")

    (path,) = (outbox / "email").iterdir()
    assert path.suffix == ".eml"
    assert _mode(path) == 0o600
    assert _mode(outbox / "email") == 0o700
    assert _mode(outbox) == 0o700
    parsed = email.message_from_bytes(path.read_bytes(), policy=default_policy)
    assert parsed["Message-ID"] == message_id
    assert parsed["To"] == "patient@example.org"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    assert "Иванова Анна Петровна" in body.get_content()
    (attachment,) = parsed.iter_attachments()
    assert Calendar.from_ical(attachment.get_content())["METHOD"] == "REQUEST"


async def test_outbox_sender_tightens_an_existing_folder_and_keeps_one_file_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    (outbox / "email").mkdir(parents=True, mode=0o755)
    (outbox / "email").chmod(0o755)
    sender = OutboxSender(outbox, sender="no-reply@clinic.example")
    ids = {await sender.send(to="patient@example.org", message=_message(), ics=None, ics_method=None)
           for _ in range(3)}
    assert len(ids) == 3
    files = sorted((outbox / "email").iterdir())
    assert len(files) == 3
    assert all(not f.name.startswith(".") for f in files)  # no temporary file left behind
    assert _mode(outbox / "email") == 0o700


async def test_outbox_sms_gateway_writes_private_json(tmp_path: Path) -> None:
    gateway = OutboxSmsGateway(tmp_path / "outbox")
    message_id = await gateway.send(to=PHONE, text="Вы записаны на телеконсультацию.")
    (path,) = (tmp_path / "outbox" / "sms").iterdir()
    assert path.suffix == ".json"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["id"] == message_id
    assert record["to"] == PHONE
    assert record["text"] == "Вы записаны на телеконсультацию."
    assert dt.datetime.fromisoformat(record["created_at"]).tzinfo is not None


@pytest.mark.parametrize("phone", ["89991234567", "+7 999 123-45-67", "", "+0123456789", "+7999123456789012"])
async def test_sms_gateways_refuse_a_number_not_in_e164_without_echoing_it(tmp_path: Path, phone: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164") as caught:
        await OutboxSmsGateway(tmp_path).send(to=phone, text="text")
    assert not phone or phone not in str(caught.value)
    assert not (tmp_path / "sms").exists()


@pytest.mark.parametrize("to", ["Patient <patient@example.org>", "a@example.org, b@example.org", "patient",
                                "patient@example.org\r\nBcc: x@example.org", "a@b@example.org"])
def test_build_email_takes_exactly_one_bare_address(to: str) -> None:
    with pytest.raises(ValueError, match="single bare"):
        build_email(sender="no-reply@clinic.example", to=to, message=_message(), ics=None, ics_method=None)


@pytest.mark.parametrize(("ics", "method"), [(b"BEGIN:VCALENDAR", None), (None, "REQUEST"), (b"x", "PUBLISH")])
def test_build_email_needs_ics_and_a_known_method_together(ics: bytes | None, method: str | None) -> None:
    with pytest.raises(ValueError, match="ics"):
        build_email(sender="no-reply@clinic.example", to="p@example.org", message=_message(), ics=ics,
                    ics_method=method)


def test_senders_from_settings_default_to_the_outbox(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    email_sender = email_sender_from_settings(settings)
    sms_gateway = sms_gateway_from_settings(settings)
    assert isinstance(email_sender, OutboxSender)
    assert email_sender.folder == settings.outbox_dir / "email"
    assert isinstance(sms_gateway, OutboxSmsGateway)
    assert sms_gateway.folder == settings.outbox_dir / "sms"


def test_senders_from_settings_use_smtp_and_webhook_when_configured(tmp_path: Path) -> None:
    settings = _settings(tmp_path, smtp_host="smtp.clinic.example", smtp_username="u", smtp_password="p",
                         sms_webhook_url="https://sms.clinic.example/send", sms_webhook_token="t")
    assert isinstance(email_sender_from_settings(settings), SmtpSender)
    assert isinstance(sms_gateway_from_settings(settings), WebhookSmsGateway)
    # Port 465 needs only smtp_tls: the default smtp_starttls=True must not make the two collide.
    implicit = _settings(tmp_path, smtp_host="smtp.clinic.example", smtp_port=465, smtp_tls=True)
    assert isinstance(email_sender_from_settings(implicit), SmtpSender)


def test_production_refuses_the_outbox(tmp_path: Path) -> None:
    settings = _settings(tmp_path, env="production")
    with pytest.raises(NotifyConfigurationError, match="SMTP_HOST"):
        email_sender_from_settings(settings)
    with pytest.raises(NotifyConfigurationError, match="SMS_WEBHOOK_URL"):
        sms_gateway_from_settings(settings)


def test_production_refuses_a_plain_http_webhook_except_on_loopback(tmp_path: Path) -> None:
    remote = _settings(tmp_path, env="production", sms_webhook_url="http://sms.clinic.example/send")
    with pytest.raises(NotifyConfigurationError, match="https"):
        sms_gateway_from_settings(remote)
    local = _settings(tmp_path, env="production", sms_webhook_url="http://127.0.0.1:9000/send")
    assert isinstance(sms_gateway_from_settings(local), WebhookSmsGateway)


def test_smtp_sender_refuses_credentials_in_clear_to_a_remote_host() -> None:
    with pytest.raises(NotifyConfigurationError, match="unencrypted"):
        SmtpSender(host="smtp.clinic.example", port=25, sender="a@b.example", starttls=False,
                   username="u", password="p")
    with pytest.raises(NotifyConfigurationError, match="not both"):
        SmtpSender(host="smtp.clinic.example", port=465, sender="a@b.example", starttls=True, tls=True)
    with pytest.raises(NotifyConfigurationError, match="together"):
        SmtpSender(host="smtp.clinic.example", port=587, sender="a@b.example", username="u")
