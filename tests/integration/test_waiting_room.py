"""Check-in with screening and device check, the physician's live queue, admission, no-shows, hours."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import keys
from server.audit.services import AuditContext
from server.db.base import utcnow
from server.db.engine import transaction
from server.scheduling import services
from server.scheduling.models import Consultation, ConsultationKind, ConsultationStatus, ScreeningEvent
from server.scheduling.screening import QuestionnaireDefinition
from tests.factories import Account, register_patient
from tests.scheduling_helpers import (
    benign_answers,
    booked_clinic,
    booking,
    free_slot,
    physician_on_duty,
    seed_catalogue,
)

DEVICES = {"camera": True, "microphone": True, "speaker": True, "browser": "Chromium 156"}


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    return await booked_clinic(aiohttp_client, tmp_path, database_url)


async def _check_in(clinic: dict[str, Any], answers: dict[str, Any] | None = None) -> Any:
    checkin = clinic["catalogue"]["checkin"]
    return await clinic["client"].post(
        f"/api/v1/consultations/{clinic['consultation']}/check-in", headers=clinic["patient"].auth,
        json={"answers": answers if answers is not None else benign_answers(checkin), "device_check": DEVICES})


async def _sse_events(client: TestClient, doctor: Account, count: int, opened: asyncio.Event) -> list[str]:
    """Read `count` events after `ready` from the waiting-room stream."""
    names: list[str] = []
    async with client.get("/api/v1/physicians/me/waiting-room/events", headers=doctor.auth) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
                if name == "ready":
                    opened.set()
                    continue
                names.append(name)
                if len(names) == count:
                    return names
    return names


async def test_waiting_room_flow_check_in_live_queue_admit_finish(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    opened = asyncio.Event()
    listener = asyncio.create_task(_sse_events(client, doctor, 2, opened))
    await asyncio.wait_for(opened.wait(), timeout=10)

    checked_in = await _check_in(clinic)
    assert checked_in.status == 200, await checked_in.text()
    assert (await checked_in.json())["status"] == "waiting"

    queue = await (await client.get("/api/v1/physicians/me/waiting-room", headers=doctor.auth)).json()
    assert [item["patient_name"] for item in queue["items"]] == ["Пётр Ожидающий"]
    assert queue["items"][0]["device_check"]["camera"] is True

    admitted = await client.post(f"/api/v1/consultations/{clinic['consultation']}/admit", headers=doctor.auth)
    assert (await admitted.json())["status"] == "in_call"
    assert await asyncio.wait_for(listener, timeout=10) == ["checked_in", "admit"]
    assert (await (await client.get("/api/v1/physicians/me/waiting-room", headers=doctor.auth)).json())["items"] == []

    finished = await (await client.post(f"/api/v1/consultations/{clinic['consultation']}/finish",
                                        headers=doctor.auth)).json()
    assert finished["status"] == "completed"
    # Figures are per clinic day in the physician's zone.
    moscow_day = dt.datetime.fromisoformat(finished["starts_at"]).astimezone(ZoneInfo("Europe/Moscow")).date()
    figures = await (await client.get(f"/api/v1/physicians/{clinic['physician_id']}/stats?day={moscow_day}",
                                      headers=doctor.auth)).json()
    assert figures["booked"] == 1
    assert figures["completed"] == 1
    assert figures["no_show_rate"] == 0.0
    assert figures["mean_wait_seconds"] >= 0


async def test_waiting_room_illegal_steps_are_409(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    early = await client.post(f"/api/v1/consultations/{clinic['consultation']}/admit", headers=doctor.auth)
    assert early.status == 409
    assert (await early.json())["code"] == "illegal_transition"
    finish = await client.post(f"/api/v1/consultations/{clinic['consultation']}/finish", headers=doctor.auth)
    assert finish.status == 409


async def test_waiting_room_red_flag_at_check_in_stops_it(clinic: dict[str, Any]) -> None:
    answers = {**benign_answers(clinic["catalogue"]["checkin"])}
    chest = next(q.id for q in clinic["catalogue"]["checkin"].questions if "chest" in q.id)
    answers[chest] = True
    response = await _check_in(clinic, answers)
    assert response.status == 422
    assert (await response.json())["code"] == "red_flag"
    async with clinic["client"].app[keys.read_sessions]() as session:
        consultation = await session.get(Consultation, uuid.UUID(clinic["consultation"]))
        event = (await session.scalars(select(ScreeningEvent))).one()
    assert consultation is not None
    assert consultation.status is ConsultationStatus.refused
    assert event.stage.value == "checkin"
    assert event.consultation_id == consultation.id


async def test_waiting_room_check_in_too_early_is_closed(client: TestClient) -> None:
    catalogue = await seed_catalogue(client)
    _, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    far = await free_slot(client, patient, physician_id, 20)  # hours away; check-in opens 15 minutes before
    made = await (await client.post("/api/v1/consultations", headers=patient.auth, json=booking(
        physician_id, far, benign_answers(catalogue["respiratory"])))).json()
    response = await client.post(f"/api/v1/consultations/{made['id']}/check-in", headers=patient.auth,
                                 json={"answers": benign_answers(catalogue["checkin"]), "device_check": DEVICES})
    assert response.status == 409
    assert (await response.json())["code"] == "checkin_closed"


async def test_no_show_after_the_grace_period(client: TestClient) -> None:
    """The job turns a consultation nobody checked in to into a no-show, once the grace has passed."""
    catalogue = await seed_catalogue(client)
    _, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    starts_at = dt.datetime.fromisoformat(await free_slot(client, patient, physician_id))
    windows = services.Windows()
    async with transaction(client.app[keys.sessions]) as session:
        made = await services.book(session, patient_id=uuid.UUID(patient.patient_id or ""),
                                   physician_id=uuid.UUID(physician_id), starts_at=starts_at, condition_code="arvi",
                                   kind=ConsultationKind.primary, answers=benign_answers(catalogue["respiratory"]),
                                   complaint="", ctx=AuditContext(uuid.UUID(patient.user_id), "patient"),
                                   now=utcnow(), windows=windows)
    assert isinstance(made, Consultation)
    async with transaction(client.app[keys.sessions]) as session:
        early = await services.mark_no_shows(session, now=starts_at + windows.no_show_grace, windows=windows)
        late = await services.mark_no_shows(session, now=starts_at + windows.no_show_grace
                                            + dt.timedelta(seconds=1), windows=windows)
    assert early == []
    assert late == [made.id]
    async with client.app[keys.read_sessions]() as session:
        stored = await session.get(Consultation, made.id)
    assert stored is not None
    assert stored.status is ConsultationStatus.no_show


async def test_hours_change_flags_bookings_instead_of_dropping_them(client: TestClient) -> None:
    catalogue = await seed_catalogue(client)
    doctor, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, physician_id, 30)
    made = await (await client.post("/api/v1/consultations", headers=patient.auth, json=booking(
        physician_id, starts_at, benign_answers(catalogue["respiratory"])))).json()
    # The physician now works only on Sundays 03:00-04:00: the booking is no longer covered.
    changed = await client.put(f"/api/v1/physicians/{physician_id}/availability", headers=doctor.auth,
                               json={"ranges": [{"weekday": 6, "start": "03:00", "end": "04:00"}]})
    assert changed.status == 200, await changed.text()
    body = await changed.json()
    assert [c["id"] for c in body["affected"]] == [made["id"]]
    assert body["affected"][0]["needs_reschedule"] is True
    still = await (await client.get(f"/api/v1/consultations/{made['id']}", headers=patient.auth)).json()
    assert still["status"] == "scheduled"


async def test_hours_of_another_physician_are_not_editable(client: TestClient) -> None:
    await seed_catalogue(client)
    doctor, _ = await physician_on_duty(client)
    _, other_id = await physician_on_duty(client)
    response = await client.put(f"/api/v1/physicians/{other_id}/availability", headers=doctor.auth,
                                json={"ranges": []})
    assert response.status == 404


async def test_questionnaire_versions_keep_the_one_a_booking_used(client: TestClient) -> None:
    """Publishing a new version changes what new bookings answer; old consultations keep theirs."""
    catalogue: dict[str, QuestionnaireDefinition] = await seed_catalogue(client)
    from tests.factories import admin

    boss = await admin(client)
    stricter = catalogue["respiratory"].model_dump(mode="json")
    for rule in stricter["rules"]:
        if rule["id"] == "fever_above_39":
            rule["when"]["value"] = 38.0
    published = await client.post("/api/v1/admin/questionnaires", headers=boss.auth, json=stricter)
    assert published.status == 201, await published.text()
    assert (await published.json())["version"] == 2
    current = await (await client.get("/api/v1/conditions/arvi/questionnaire", headers=boss.auth)).json()
    assert current["version"] == 2
