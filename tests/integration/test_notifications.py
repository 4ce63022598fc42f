"""What patients receive: a confirmation with a calendar invitation, reminders exactly once, no diagnosis."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import json
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from icalendar import Calendar

from server import keys
from server.app import create_app
from server.db.engine import transaction
from server.notify import OutboxSmsGateway, SmtpSender
from server.scheduling import delivery, outbox
from server.scheduling.catalogue import load_conditions
from tests.conftest import make_settings
from tests.factories import register_patient
from tests.scheduling_helpers import benign_answers, booking, free_slot, physician_on_duty, seed_catalogue
from tests.smtp import Sink, serve

COMPLAINT = "Кашель и насморк третий день"


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def smtp_port(sink: Sink) -> Iterator[int]:
    yield from serve(sink)


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str, smtp_port: int) -> dict[str, Any]:
    settings = make_settings(tmp_path, database_url, public_url="https://telemed.clinic.example",
                             smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_starttls=False)
    client: TestClient = await aiohttp_client(create_app(settings))
    catalogue = await seed_catalogue(client)
    doctor, physician_id = await physician_on_duty(client)
    transports = delivery.Transports(
        SmtpSender(host="127.0.0.1", port=smtp_port, sender=settings.mail_from, starttls=False, timeout=5.0),
        OutboxSmsGateway(settings.outbox_dir))
    return {"client": client, "catalogue": catalogue, "doctor": doctor, "physician_id": physician_id,
            "settings": settings, "transports": transports}


async def _deliver(clinic: dict[str, Any], now: dt.datetime | None = None) -> int:
    app = clinic["client"].app
    return await delivery.deliver_pending(app[keys.sessions], app[keys.read_sessions], settings=clinic["settings"],
                                          transports=clinic["transports"],
                                          now=now or dt.datetime.now(dt.UTC))


async def _queue_reminders(clinic: dict[str, Any], now: dt.datetime) -> int:
    async with transaction(clinic["client"].app[keys.sessions]) as session:
        return await outbox.queue_due_reminders(session, now=now)


async def _book(clinic: dict[str, Any], patient: Any, index: int) -> dict[str, Any]:
    starts_at = await free_slot(clinic["client"], patient, clinic["physician_id"], index)
    response = await clinic["client"].post("/api/v1/consultations", headers=patient.auth, json={
        **booking(clinic["physician_id"], starts_at, benign_answers(clinic["catalogue"]["respiratory"])),
        "complaint": COMPLAINT})
    assert response.status == 201, await response.text()
    return dict(await response.json())


def _received(sink: Sink) -> list[EmailMessage]:
    return [email.message_from_bytes(e.original_content, policy=default_policy)  # type: ignore[misc]
            for e in sink.envelopes]


def _calendar(message: EmailMessage) -> Calendar:
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    return Calendar.from_ical(part.get_payload(decode=True))


def _everything_readable(message: EmailMessage) -> str:
    return "\n".join(str(part.get_payload(decode=True).decode())  # type: ignore[union-attr]
                     for part in message.walk() if not part.is_multipart()) + str(message["Subject"])


async def test_booking_confirmation_has_an_invitation_and_no_diagnosis(clinic: dict[str, Any], sink: Sink) -> None:
    patient = await register_patient(clinic["client"])
    made = await _book(clinic, patient, 10)
    assert await _deliver(clinic) == 1
    [received] = _received(sink)
    assert received["To"] == patient.email
    calendar = _calendar(received)
    assert str(calendar["METHOD"]) == "REQUEST"
    event = next(iter(calendar.walk("VEVENT")))
    assert event["DTSTART"].dt == dt.datetime.fromisoformat(made["starts_at"])
    assert made["id"] in str(event["UID"])
    text = _everything_readable(received)
    assert COMPLAINT not in text
    for condition in load_conditions():  # not even the name of the condition, in either language
        assert condition.name.ru not in text
        assert condition.name.en.lower() not in text.lower()
    assert f"https://telemed.clinic.example/my/consultations/{made['id']}" in text


async def test_reminders_are_sent_exactly_once_even_if_the_task_runs_twice(clinic: dict[str, Any],
                                                                           sink: Sink) -> None:
    patient = await register_patient(clinic["client"])
    made = await _book(clinic, patient, 10)  # over three hours ahead: the one-hour reminder comes later
    starts_at = dt.datetime.fromisoformat(made["starts_at"])
    reminder_time = starts_at - dt.timedelta(minutes=50)
    assert await _deliver(clinic) == 1  # the confirmation
    for _ in range(2):  # a retried task: queue and send again
        await _queue_reminders(clinic, reminder_time)
        await _deliver(clinic, reminder_time)
    # and two workers at once
    await asyncio.gather(_queue_reminders(clinic, reminder_time), _queue_reminders(clinic, reminder_time))
    await asyncio.gather(_deliver(clinic, reminder_time), _deliver(clinic, reminder_time))
    subjects = [str(m["Subject"]) for m in _received(sink)]
    assert len(subjects) == 2, subjects  # the confirmation and one reminder; no 24-hour one (booked too late)
    reminder = _received(sink)[1]
    assert not any(p.get_content_type() == "text/calendar" for p in reminder.walk())
    assert COMPLAINT not in _everything_readable(reminder)


async def test_cancellation_sends_a_cancel_invitation_with_a_higher_sequence(clinic: dict[str, Any],
                                                                             sink: Sink) -> None:
    patient = await register_patient(clinic["client"])
    made = await _book(clinic, patient, 10)
    cancelled = await clinic["client"].post(f"/api/v1/consultations/{made['id']}/cancel", headers=patient.auth)
    assert cancelled.status == 200
    assert await _deliver(clinic) == 2
    booked, cancel = (_calendar(m) for m in _received(sink))
    assert str(cancel["METHOD"]) == "CANCEL"
    first, second = (next(iter(c.walk("VEVENT"))) for c in (booked, cancel))
    assert str(first["UID"]) == str(second["UID"])
    assert int(second["SEQUENCE"]) > int(first["SEQUENCE"])


async def test_sms_goes_only_to_patients_who_chose_it(clinic: dict[str, Any], sink: Sink) -> None:
    client: TestClient = clinic["client"]
    quiet, texting = await register_patient(client), await register_patient(client)
    chosen = await client.put("/api/v1/me/notifications", headers=texting.auth, json={"email": False, "sms": True})
    assert chosen.status == 200
    await _book(clinic, quiet, 10)
    await _book(clinic, texting, 11)
    assert await _deliver(clinic) == 2
    assert [m["To"] for m in _received(sink)] == [quiet.email]
    [sms_file] = list((clinic["settings"].outbox_dir / "sms").glob("*.json"))
    sent = json.loads(sms_file.read_text())
    assert sent["to"] == "+79160001122"
    assert COMPLAINT not in sent["text"]


async def test_patient_is_told_when_hours_no_longer_cover_the_booking(clinic: dict[str, Any], sink: Sink) -> None:
    patient = await register_patient(clinic["client"])
    await _book(clinic, patient, 30)
    assert await _deliver(clinic) == 1  # the confirmation
    changed = await clinic["client"].put(f"/api/v1/physicians/{clinic['physician_id']}/availability",
                                         headers=clinic["doctor"].auth,
                                         json={"ranges": [{"weekday": 6, "start": "03:00", "end": "04:00"}]})
    assert len((await changed.json())["affected"]) == 1
    assert await _deliver(clinic) == 1
    notice = _received(sink)[-1]
    assert "another time" in str(notice["Subject"]) or "другое время" in str(notice["Subject"])
    assert COMPLAINT not in _everything_readable(notice)
