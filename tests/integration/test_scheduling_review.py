"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import keys
from server.audit.services import AuditContext
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.scheduling import conditions, services
from server.scheduling.models import Consultation, ConsultationKind, ConsultationStatus
from server.scheduling.screening import QuestionnaireDefinition
from tests.consent_helpers import sign_consents
from tests.factories import Account, register_patient
from tests.scheduling_helpers import benign_answers, booking, free_slot, physician_on_duty, seed_catalogue


@pytest.fixture
async def catalogue(client: TestClient) -> dict[str, QuestionnaireDefinition]:
    return await seed_catalogue(client)


async def test_physician_cannot_be_double_booked_by_overlapping_slots(client: TestClient, catalogue: Any) -> None:
    """Hours changed from 20- to 30-minute slots: a kept booking at 19:20 blocks the new 19:00 and 19:30 slots."""
    doctor, physician_id = await physician_on_duty(client)
    alice, bob = await register_patient(client), await register_patient(client)
    starts_at = dt.datetime.fromisoformat(await free_slot(client, alice, physician_id, 40))
    made = await client.post("/api/v1/consultations", headers=alice.auth, json=booking(
        physician_id, starts_at.isoformat(), benign_answers(catalogue["respiratory"])))
    assert made.status == 201
    hours = [{"weekday": day, "start": "00:00", "end": "23:30", "slot_minutes": 30} for day in range(7)]
    assert (await client.put(f"/api/v1/physicians/{physician_id}/availability", headers=doctor.auth,
                             json={"ranges": hours})).status == 200
    offered = await (await client.get(f"/api/v1/slots?physician_id={physician_id}&limit=500",
                                      headers=bob.auth)).json()
    overlapping = [s["starts_at"] for s in offered["items"]
                   if dt.datetime.fromisoformat(s["starts_at"]) < starts_at + dt.timedelta(minutes=20)
                   and dt.datetime.fromisoformat(s["ends_at"]) > starts_at]
    for slot in overlapping:
        response = await client.post("/api/v1/consultations", headers=bob.auth, json=booking(
            physician_id, slot, benign_answers(catalogue["respiratory"])))
        assert response.status == 409, slot


async def test_nan_answers_are_refused(client: TestClient, catalogue: Any) -> None:
    _, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, physician_id)
    body = booking(physician_id, starts_at, benign_answers(catalogue["respiratory"]))
    raw = json.dumps(body).replace('"temperature": 36.6', '"temperature": NaN')
    assert "NaN" in raw  # json.dumps would write NaN for a float('nan') too; the server must refuse it
    response = await client.post("/api/v1/consultations", data=io.BytesIO(raw.encode()),
                                 headers={**patient.auth, "Content-Type": "application/json"})
    assert response.status == 400


async def test_second_check_in_screens_again(client: TestClient, catalogue: Any) -> None:
    windows = services.Windows(checkin_opens=dt.timedelta(hours=2))
    _, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    await sign_consents(client, patient)
    consultation = await _book(client, patient, physician_id, catalogue)
    viewer = services.Viewer(uuid.UUID(patient.user_id), Role.patient, uuid.UUID(patient.patient_id or ""))
    answers = benign_answers(catalogue["checkin"])
    policy = client.app[keys.consent].policy
    async with transaction(client.app[keys.sessions]) as session:
        first = await services.check_in(session, consultation_id=consultation, viewer=viewer, answers=answers,
                                        device_check={}, ctx=AuditContext(actor_role="test"), now=utcnow(),
                                        windows=windows, consent_policy=policy)
    assert isinstance(first, Consultation)
    chest = next(q.id for q in catalogue["checkin"].questions if "chest" in q.id)
    async with transaction(client.app[keys.sessions]) as session:
        second = await services.check_in(session, consultation_id=consultation, viewer=viewer,
                                         answers={**answers, chest: True}, device_check={},
                                         ctx=AuditContext(actor_role="test"), now=utcnow(), windows=windows,
                                         consent_policy=policy)
    assert isinstance(second, services.ScreeningRefusal)
    assert second.red_flag


async def test_a_primary_consultation_is_not_a_diagnosis(client: TestClient, catalogue: Any) -> None:
    _, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    consultation = await _book(client, patient, physician_id, catalogue)
    async with transaction(client.app[keys.sessions]) as session:
        stored = await session.get(Consultation, consultation)
        assert stored is not None
        stored.status = ConsultationStatus.completed
    async with client.app[keys.read_sessions]() as session:
        assert not await conditions.has_prior_diagnosis(session, patient_id=uuid.UUID(patient.patient_id or ""),
                                                        condition_code="arvi")


async def test_waiting_patients_nobody_admitted_become_no_shows(client: TestClient, catalogue: Any) -> None:
    _, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    consultation = await _book(client, patient, physician_id, catalogue)
    async with transaction(client.app[keys.sessions]) as session:
        stored = await session.get(Consultation, consultation)
        assert stored is not None
        stored.status = ConsultationStatus.waiting
        ends_at = stored.ends_at
    windows = services.Windows()
    async with transaction(client.app[keys.sessions]) as session:
        marked = await services.mark_no_shows(session, now=ends_at + windows.no_show_grace + dt.timedelta(seconds=1),
                                              windows=windows)
    assert marked == [consultation]


async def test_physician_books_only_into_own_schedule(client: TestClient, catalogue: Any) -> None:
    doctor, _ = await physician_on_duty(client)
    _, other_id = await physician_on_duty(client)
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, other_id)
    body = {**booking(other_id, starts_at, benign_answers(catalogue["respiratory"])),
            "patient_id": patient.patient_id}
    assert (await client.post("/api/v1/consultations", headers=doctor.auth, json=body)).status == 404
    unknown = {**body, "patient_id": str(uuid.uuid4())}
    assert (await client.post("/api/v1/consultations", headers=doctor.auth, json=unknown)).status == 404


@pytest.mark.parametrize("query", ["stats?day=9999-12-31", "stats?day=0001-01-01"])
async def test_absurd_dates_are_422(client: TestClient, catalogue: Any, query: str) -> None:
    doctor, physician_id = await physician_on_duty(client)
    response = await client.get(f"/api/v1/physicians/{physician_id}/{query}", headers=doctor.auth)
    assert response.status == 422
    patient = await register_patient(client)
    far = await client.post("/api/v1/consultations", headers=patient.auth, json=booking(
        physician_id, "9999-12-31T23:59:00-14:00", benign_answers(catalogue["respiratory"])))
    assert far.status == 422
    slots = await client.get("/api/v1/slots?date_from=9999-12-31", headers=patient.auth)
    assert slots.status == 422


async def _book(client: TestClient, patient: Account, physician_id: str, catalogue: Any) -> uuid.UUID:
    starts_at = dt.datetime.fromisoformat(await free_slot(client, patient, physician_id))
    async with transaction(client.app[keys.sessions]) as session:
        made = await services.book(session, patient_id=uuid.UUID(patient.patient_id or ""),
                                   physician_id=uuid.UUID(physician_id), starts_at=starts_at, condition_code="arvi",
                                   kind=ConsultationKind.primary, answers=benign_answers(catalogue["respiratory"]),
                                   complaint="", ctx=AuditContext(uuid.UUID(patient.user_id), "patient"),
                                   now=utcnow(), windows=services.Windows())
    assert isinstance(made, Consultation)
    return made.id



async def test_staff_listings_are_audited_per_patient(client: TestClient, catalogue: Any) -> None:
    from sqlalchemy import select

    from server.audit.models import AuditEntry

    doctor, physician_id = await physician_on_duty(client)
    patient = await register_patient(client)
    await _book(client, patient, physician_id, catalogue)
    assert (await client.get("/api/v1/consultations", headers=doctor.auth)).status == 200
    async with client.app[keys.read_sessions]() as session:
        listed = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "consultation.listed"))).all()
    assert [str(e.subject_patient_id) for e in listed] == [patient.patient_id]
    log = await (await client.get("/api/v1/me/access-log", headers=patient.auth)).json()
    assert log["items"][0]["action"] == "consultation.listed"
