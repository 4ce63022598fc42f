"""Booking with screening, the race for a slot, changes, and who may see what."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from server import keys
from server.app import create_app
from server.auth.models import Role
from server.scheduling.models import Consultation, ScreeningEvent
from server.scheduling.screening import QuestionnaireDefinition
from tests.conftest import make_settings
from tests.factories import Account, admin, create_staff, register_patient
from tests.scheduling_helpers import benign_answers, booking, free_slot, physician_on_duty, seed_catalogue


@pytest.fixture
async def catalogue(client: TestClient) -> dict[str, QuestionnaireDefinition]:
    return await seed_catalogue(client)


@pytest.fixture
async def doctor(client: TestClient, catalogue: Any) -> tuple[Account, str]:
    return await physician_on_duty(client)


async def _book(client: TestClient, patient: Account, physician_id: str, starts_at: str,
                catalogue: dict[str, QuestionnaireDefinition]) -> dict[str, Any]:
    response = await client.post("/api/v1/consultations", headers=patient.auth,
                                 json=booking(physician_id, starts_at, benign_answers(catalogue["respiratory"])))
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def _count(client: TestClient, model: Any) -> int:
    async with client.app[keys.read_sessions]() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_booking_makes_a_scheduled_consultation(client: TestClient, catalogue: Any,
                                                      doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, doctor[1])
    response = await client.post("/api/v1/consultations", headers=patient.auth,
                                 json=booking(doctor[1], starts_at, benign_answers(catalogue["respiratory"])))
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["status"] == "scheduled"
    assert body["kind"] == "primary"
    assert body["condition_code"] == "arvi"
    assert body["screening_questionnaire"] == "respiratory"
    # The slot is gone from the free list.
    slots = await (await client.get(f"/api/v1/slots?physician_id={doctor[1]}&limit=5", headers=patient.auth)).json()
    assert starts_at not in [s["starts_at"] for s in slots["items"]]


async def test_booking_race_has_exactly_one_winner(client: TestClient, catalogue: Any,
                                                   doctor: tuple[Account, str]) -> None:
    """50 patients ask for one slot at once: one booking, 49 clear 409 problems."""
    patients = [await register_patient(client) for _ in range(50)]
    starts_at = await free_slot(client, patients[0], doctor[1])
    body = booking(doctor[1], starts_at, benign_answers(catalogue["respiratory"]))
    responses = await asyncio.gather(*[client.post("/api/v1/consultations", headers=p.auth, json=body)
                                       for p in patients])
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [409] * 49
    codes = {(await r.json())["code"] for r in responses if r.status == 409}
    assert codes == {"slot_taken"}
    assert await _count(client, Consultation) == 1


async def test_booking_red_flag_books_nothing_and_records_the_event(client: TestClient, catalogue: Any,
                                                                    doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, doctor[1])
    answers = {**benign_answers(catalogue["respiratory"]), "temperature": 39.6}
    response = await client.post("/api/v1/consultations", headers=patient.auth,
                                 json=booking(doctor[1], starts_at, answers))
    assert response.status == 422
    problem = await response.json()
    assert problem["code"] == "red_flag"
    assert problem["emergency"]["numbers"] == ["103", "112"]
    assert "103" in problem["detail"]
    assert await _count(client, Consultation) == 0
    async with client.app[keys.read_sessions]() as session:
        event = (await session.scalars(select(ScreeningEvent))).one()
    assert event.stage.value == "booking"
    assert event.kind == "red_flag"
    assert event.answers["temperature"] == 39.6


async def test_booking_screening_answers_are_validated_by_question(client: TestClient, catalogue: Any,
                                                                   doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, doctor[1])
    answers = {**benign_answers(catalogue["respiratory"]), "temperature": "high"}
    response = await client.post("/api/v1/consultations", headers=patient.auth,
                                 json=booking(doctor[1], starts_at, answers))
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "answers.temperature"


async def test_booking_repeat_needs_a_diagnosis_made_here(client: TestClient, catalogue: Any,
                                                          doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, doctor[1])
    body = booking(doctor[1], starts_at, benign_answers(catalogue["cardiovascular"]), condition="hypertension",
                   kind="repeat")
    refused = await client.post("/api/v1/consultations", headers=patient.auth, json=body)
    assert refused.status == 422
    assert (await refused.json())["code"] == "no_prior_diagnosis"
    primary = await client.post("/api/v1/consultations", headers=patient.auth, json={**body, "kind": "primary"})
    assert (await primary.json())["code"] == "primary_not_allowed"  # chronic follow-up is repeat-only
    recorded = await client.post(f"/api/v1/patients/{patient.patient_id}/diagnoses", headers=doctor[0].auth,
                                 json={"condition_code": "hypertension", "diagnosed_on": "2025-02-01"})
    assert recorded.status == 201
    allowed = await client.post("/api/v1/consultations", headers=patient.auth, json=body)
    assert allowed.status == 201, await allowed.text()


async def test_booking_patient_cannot_hold_two_overlapping(client: TestClient, catalogue: Any,
                                                           doctor: tuple[Account, str]) -> None:
    _, other_doctor = await physician_on_duty(client)
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, doctor[1])
    answers = benign_answers(catalogue["respiratory"])
    first = await client.post("/api/v1/consultations", headers=patient.auth,
                              json=booking(doctor[1], starts_at, answers))
    assert first.status == 201
    second = await client.post("/api/v1/consultations", headers=patient.auth,
                               json=booking(other_doctor, starts_at, answers))
    assert second.status == 409
    assert (await second.json())["code"] == "overlapping_consultation"


async def test_booking_a_time_the_physician_does_not_offer_is_refused(client: TestClient, catalogue: Any,
                                                                       doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, doctor[1])
    odd = (dt.datetime.fromisoformat(starts_at) + dt.timedelta(minutes=7)).isoformat()
    response = await client.post("/api/v1/consultations", headers=patient.auth,
                                 json=booking(doctor[1], odd, benign_answers(catalogue["respiratory"])))
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "starts_at"


async def test_booking_other_patients_consultation_is_404(client: TestClient, catalogue: Any,
                                                          doctor: tuple[Account, str]) -> None:
    alice, bob = await register_patient(client), await register_patient(client)
    starts_at = await free_slot(client, alice, doctor[1])
    made = await _book(client, alice, doctor[1], starts_at, catalogue)
    for path in (f"/api/v1/consultations/{made['id']}",):
        assert (await client.get(path, headers=bob.auth)).status == 404
    assert (await client.post(f"/api/v1/consultations/{made['id']}/cancel", headers=bob.auth)).status == 404
    other_doctor, _ = await physician_on_duty(client)
    assert (await client.get(f"/api/v1/consultations/{made['id']}", headers=other_doctor.auth)).status == 404
    mine = await client.get(f"/api/v1/consultations/{made['id']}", headers=doctor[0].auth)
    assert (await mine.json())["complaint"] == "Кашель и насморк третий день"
    listed = await (await client.get("/api/v1/consultations", headers=bob.auth)).json()
    assert listed["items"] == []


async def test_booking_cancel_frees_the_slot_and_respects_the_cutoff(aiohttp_client: Any, tmp_path: Path,
                                                                     database_url: str) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, database_url,
                                                                       booking_cutoff_minutes=60 * 24 * 30)))
    catalogue = await seed_catalogue(client)
    doctor_account, doctor_id = await physician_on_duty(client)
    patient = await register_patient(client)
    starts_at = await free_slot(client, patient, doctor_id)
    made = await _book(client, patient, doctor_id, starts_at, catalogue)
    late = await client.post(f"/api/v1/consultations/{made['id']}/cancel", headers=patient.auth)
    assert late.status == 409
    assert (await late.json())["code"] == "too_late_to_change"
    by_staff = await client.post(f"/api/v1/consultations/{made['id']}/cancel", headers=doctor_account.auth)
    assert by_staff.status == 200
    assert (await by_staff.json())["status"] == "cancelled"
    again = await client.post(f"/api/v1/consultations/{made['id']}/cancel", headers=doctor_account.auth)
    assert (await again.json())["code"] == "illegal_transition"
    other = await register_patient(client)
    rebooked = await client.post("/api/v1/consultations", headers=other.auth,
                                 json=booking(doctor_id, starts_at, benign_answers(catalogue["respiratory"])))
    assert rebooked.status == 201


async def test_booking_reschedule_moves_to_another_free_slot(client: TestClient, catalogue: Any,
                                                             doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    # Twenty-minute slots: the 10th and 11th are well past the two-hour cut-off.
    first_slot = await free_slot(client, patient, doctor[1], 10)
    later_slot = await free_slot(client, patient, doctor[1], 11)
    made = await _book(client, patient, doctor[1], first_slot, catalogue)
    moved = await client.post(f"/api/v1/consultations/{made['id']}/reschedule", headers=patient.auth,
                              json={"starts_at": later_slot})
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["starts_at"] == later_slot


async def test_booking_staff_book_for_a_patient(client: TestClient, catalogue: Any,
                                                doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    boss = await admin(client)
    starts_at = await free_slot(client, boss, doctor[1])
    body = booking(doctor[1], starts_at, benign_answers(catalogue["respiratory"]))
    missing = await client.post("/api/v1/consultations", headers=boss.auth, json=body)
    assert (await missing.json())["errors"][0]["field"] == "patient_id"
    made = await client.post("/api/v1/consultations", headers=boss.auth,
                             json={**body, "patient_id": patient.patient_id})
    assert made.status == 201
    mine = await (await client.get("/api/v1/consultations?scope=upcoming", headers=patient.auth)).json()
    assert [c["id"] for c in mine["items"]] == [(await made.json())["id"]]


async def test_booking_qa_expert_cannot_book(client: TestClient, catalogue: Any, doctor: tuple[Account, str]) -> None:
    expert = await create_staff(client, Role.qa_expert)
    response = await client.post("/api/v1/consultations", headers=expert.auth, json={})
    assert response.status == 403


async def test_slots_filter_by_physician_local_dates_in_time_order(client: TestClient, catalogue: Any,
                                                                   doctor: tuple[Account, str]) -> None:
    patient = await register_patient(client)
    day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).astimezone(ZoneInfo("Europe/Moscow")).date()
    response = await client.get(f"/api/v1/slots?physician_id={doctor[1]}&date_from={day}&date_to={day}&limit=500",
                                headers=patient.auth)
    items = (await response.json())["items"]
    starts = [dt.datetime.fromisoformat(i["starts_at"]) for i in items]
    assert {s.astimezone(ZoneInfo("Europe/Moscow")).date() for s in starts} == {day}
    assert starts == sorted(starts)
    assert len(starts) == 71  # 00:00-23:59 in 20-minute slots
    few = await (await client.get(f"/api/v1/slots?physician_id={doctor[1]}&limit=3", headers=patient.auth)).json()
    assert len(few["items"]) == 3
