"""The patient pages over HTTP: choosing a reason and a time, screening, booking, my consultations, the waiting room."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from server import keys
from server.app import create_app
from server.auth.models import Role
from server.db.engine import transaction
from server.scheduling.models import Consultation, ConsultationStatus, ScreeningEvent
from server.scheduling.screening import QuestionnaireDefinition
from tests.conftest import make_settings
from tests.consent_helpers import sign_consents
from tests.factories import PASSWORD, Account, create_staff, register_patient
from tests.integration.test_pages import EN, RU, form_login, form_token, register_form
from tests.scheduling_helpers import benign_answers, booking, free_slot, physician_on_duty, seed_catalogue

Catalogue = dict[str, QuestionnaireDefinition]


# --- helpers -----------------------------------------------------------------------------------------------------


async def patient_in_browser(client: TestClient, full_name: str = "Anna Smirnova") -> Account:
    """A patient with both an API token (to arrange things) and the browser's cookies (to use the pages)."""
    patient = await register_patient(client, full_name=full_name)
    assert (await form_login(client, patient.email)).status == 303
    return patient


async def russian_patient_in_browser(client: TestClient) -> None:
    """A patient who registered through the page in Russian (the account's language is then Russian)."""
    token = form_token(await (await client.get("/register", headers=RU)).text())
    response = await client.post("/register", data=register_form(token, email="ru.patient@example.org",
                                                                   full_name="Мария Иванова", locale="ru"),
                                 headers=RU, allow_redirects=False)
    assert response.status == 303, await response.text()


async def page(client: TestClient, path: str, *, status: int = 200, headers: dict[str, str] = EN) -> str:
    response = await client.get(path, headers=headers, allow_redirects=False)
    assert response.status == status, (response.status, await response.text())
    assert response.content_type == "text/html"
    return await response.text()


def links(text: str, prefix: str) -> list[str]:
    return [html.unescape(found) for found in re.findall(rf'href="({re.escape(prefix)}[^"]*)"', text)]


def form_answers(definition: QuestionnaireDefinition, answers: dict[str, Any]) -> dict[str, str]:
    """Answers as a browser sends them: yes/no radios, typed numbers, choice ids."""
    sent = {}
    for question_id, value in answers.items():
        if isinstance(value, bool):
            sent[f"answers.{question_id}"] = "yes" if value else "no"
        else:
            sent[f"answers.{question_id}"] = str(value)
    return sent


async def screening_link(client: TestClient, condition: str = "arvi", *, kind: str | None = None,
                         physician_id: str | None = None, index: int = 0) -> str:
    query = f"/book?condition={condition}" + (f"&kind={kind}" if kind else "") + (
        f"&physician_id={physician_id}" if physician_id else "")
    found = links(await page(client, query), "/book/screening?")
    assert len(found) > index, "no free times listed"
    return found[index]


def booking_form(link: str, token: str, answers: dict[str, str],
                 complaint: str = "Кашель третий день") -> dict[str, str]:
    params = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    return {"csrf_token": token, **params, **answers, "complaint": complaint}


async def consultations(client: TestClient, patient: Account, scope: str = "all") -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/consultations?scope={scope}", headers=patient.auth)
    assert response.status == 200
    return list((await response.json())["items"])


async def book_via_api(client: TestClient, catalogue: Catalogue, patient: Account, physician_id: str,
                       index: int = 0) -> str:
    starts_at = await free_slot(client, patient, physician_id, index)
    made = await client.post("/api/v1/consultations", headers=patient.auth,
                             json=booking(physician_id, starts_at, benign_answers(catalogue["respiratory"])))
    assert made.status == 201, await made.text()
    return str((await made.json())["id"])


async def status_of(client: TestClient, consultation_id: str) -> ConsultationStatus:
    async with client.app[keys.read_sessions]() as session:
        consultation = await session.get(Consultation, uuid.UUID(consultation_id))
        assert consultation is not None
        return consultation.status


@pytest.fixture
async def catalogue(client: TestClient) -> Catalogue:
    return await seed_catalogue(client)


@pytest.fixture
async def doctor(client: TestClient, catalogue: Catalogue) -> tuple[Account, str]:
    return await physician_on_duty(client)


@pytest.fixture
async def open_clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """Check-in opens an hour before the start, so the next slot (within 20 minutes) can be checked in to."""
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, database_url,
                                                                       checkin_opens_minutes=60)))
    catalogue = await seed_catalogue(client)
    doctor, physician_id = await physician_on_duty(client)
    patient = await patient_in_browser(client)
    await sign_consents(client, patient)
    consultation = await book_via_api(client, catalogue, patient, physician_id)
    return {"client": client, "catalogue": catalogue, "doctor": doctor, "patient": patient,
            "consultation": consultation}


# --- step 1: the reason and the time -----------------------------------------------------------------------------


async def test_book_lists_the_catalogue_in_english_grouped(client: TestClient, catalogue: Catalogue) -> None:
    await patient_in_browser(client)
    text = await page(client, "/book")
    assert 'data-testid="conditions"' in text
    assert "Acute respiratory viral infection (common cold)" in text
    assert "Cold, cough, runny nose, sore throat" in text  # the group, named by its questionnaire
    assert 'href="/book?condition=arvi"' in text
    assert '<span class="name">ОРВИ</span>' not in text  # Russian names serve only the search


async def test_book_lists_the_catalogue_in_russian(client: TestClient, catalogue: Catalogue) -> None:
    await russian_patient_in_browser(client)
    response = await client.get("/book", headers=RU)
    assert response.headers["Content-Language"] == "ru"
    text = await response.text()
    assert '<span class="name">ОРВИ</span>' in text
    assert "Простуда, кашель, насморк, боль в горле" in text
    assert "По какому поводу консультация?" in text
    assert '<span class="name">Acute respiratory viral infection' not in text


async def test_book_search_narrows_the_list(client: TestClient, catalogue: Catalogue) -> None:
    await patient_in_browser(client)
    text = await page(client, "/book?q=bronch")
    assert 'data-testid="condition-acute_bronchitis"' in text
    assert 'data-testid="condition-influenza"' not in text
    symptom = await page(client, "/book?q=rash")  # a symptom finds its group's conditions
    assert 'data-testid="condition-urticaria"' in symptom
    assert 'data-testid="condition-arvi"' not in symptom
    nothing = await page(client, "/book?q=zzzz")
    assert 'data-testid="no-conditions"' in nothing


async def test_book_offers_only_the_kinds_a_condition_allows(client: TestClient, doctor: tuple[Account, str]) -> None:
    await patient_in_browser(client)
    both = await page(client, "/book?condition=arvi")
    assert 'data-testid="kinds"' in both
    assert 'name="kind" value="primary"' in both
    assert 'name="kind" value="repeat"' in both
    assert "already diagnosed at this clinic" in both
    repeat_only = await page(client, "/book?condition=hypertension")
    assert 'data-testid="only-kind"' in repeat_only
    assert 'name="kind" value="primary"' not in repeat_only
    assert 'type="hidden" name="kind" value="repeat"' in repeat_only
    assert all("kind=repeat" in found for found in links(repeat_only, "/book/screening?"))


async def test_book_lists_free_slots_with_physician_and_local_time(client: TestClient,
                                                                    doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    patient = await patient_in_browser(client)
    text = await page(client, f"/book?condition=arvi&physician_id={physician_id}")
    assert 'data-testid="slot"' in text
    assert "Staff physician" in text
    assert "Cardiology" in text
    assert "(Moscow, UTC+3)" in text
    first = links(text, "/book/screening?")[0]
    params = parse_qs(urlsplit(first).query)
    assert params["condition"] == ["arvi"]
    assert params["kind"] == ["primary"]
    assert params["physician_id"] == [physician_id]
    assert params["starts_at"] == [(await free_slot(client, patient, physician_id)).replace("+00:00", "Z")]
    later = links(text, "/book?")
    assert any("after=" in found for found in later)  # more times than one page holds


async def test_book_an_unknown_condition_shows_the_list_again(client: TestClient, catalogue: Catalogue) -> None:
    await patient_in_browser(client)
    text = await page(client, "/book?condition=no_such_thing")
    assert 'data-testid="unknown-condition"' in text
    assert 'data-testid="conditions"' in text


# --- step 2: screening and booking -------------------------------------------------------------------------------


async def test_screening_form_renders_the_questionnaire(client: TestClient, catalogue: Catalogue,
                                                       doctor: tuple[Account, str]) -> None:
    await patient_in_browser(client)
    text = await page(client, await screening_link(client))
    for question in catalogue["respiratory"].questions:
        assert f'name="answers.{question.id}"' in text
    assert 'name="answers.breathless_severe" value="yes"' in text  # yes/no as two radios
    assert 'name="answers.breathless_severe" value="no"' in text
    assert '<legend>Is it very hard to breathe right now' in text
    assert 'id="q-temperature" name="answers.temperature" value=""' in text
    assert 'inputmode="decimal"' in text
    assert "A number from 34 to 43" in text
    assert "°C" in text
    assert f'maxlength="{client.app[keys.settings].complaint_max_chars}"' in text
    assert 'data-testid="booking-time"' in text
    assert "(Moscow, UTC+3)" in text
    switch = links(text, "/book/screening?")  # the kind can still be changed here, without scripts
    assert len(switch) == 1
    assert "kind=repeat" in switch[0]


async def test_screening_with_missing_parts_goes_back_a_step(client: TestClient, catalogue: Catalogue) -> None:
    await patient_in_browser(client)
    response = await client.get("/book/screening?condition=arvi&kind=primary", headers=EN, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/book?condition=arvi&kind=primary"
    unknown = await client.get("/book/screening?condition=nope", headers=EN, allow_redirects=False)
    assert unknown.headers["Location"] == "/book"


async def test_booking_through_the_form_confirms_and_exists(client: TestClient, catalogue: Catalogue,
                                                          doctor: tuple[Account, str]) -> None:
    patient = await patient_in_browser(client)
    link = await screening_link(client)
    token = form_token(await page(client, link))
    answers = benign_answers(catalogue["respiratory"])
    response = await client.post("/book", data=booking_form(link, token, form_answers(catalogue["respiratory"],
                                                                                       answers)),
                                 headers=EN, allow_redirects=False)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    made = await consultations(client, patient)
    assert len(made) == 1
    assert location == f"/my/consultations/{made[0]['id']}?booked=1"
    assert made[0]["status"] == "scheduled"
    assert made[0]["kind"] == "primary"
    assert made[0]["condition_code"] == "arvi"
    detail = await (await client.get(f"/api/v1/consultations/{made[0]['id']}", headers=patient.auth)).json()
    assert detail["complaint"] == "Кашель третий день"
    assert detail["screening_answers"]["temperature"] == answers["temperature"]
    confirmation = await page(client, location)
    assert 'data-testid="booked"' in confirmation
    assert "You are booked" in confirmation
    assert "Acute respiratory viral infection (common cold)" in confirmation
    assert "What is your temperature now?" in confirmation  # the answers summary


async def test_booking_red_flag_shows_the_emergency_page_and_books_nothing(client: TestClient, catalogue: Catalogue,
                                                                          doctor: tuple[Account, str]) -> None:
    patient = await patient_in_browser(client)
    link = await screening_link(client)
    token = form_token(await page(client, link))
    answers = {**benign_answers(catalogue["respiratory"]), "temperature": 40.2}
    response = await client.post("/book", data=booking_form(link, token, form_answers(catalogue["respiratory"],
                                                                                       answers)),
                                 headers=EN, allow_redirects=False)
    assert response.status == 422
    text = await response.text()
    assert 'data-testid="emergency"' in text
    assert "Call an ambulance: 103 (or 112)" in text
    assert 'href="tel:103"' in text
    assert 'href="tel:112"' in text
    assert "A temperature above 39 °C needs urgent examination." in text  # the rule's message
    assert 'data-testid="nothing-booked"' in text
    assert await consultations(client, patient) == []
    async with client.app[keys.read_sessions]() as session:
        assert await session.scalar(select(func.count()).select_from(ScreeningEvent)) == 1  # the clinic is told


async def test_booking_red_flag_in_russian(client: TestClient, catalogue: Catalogue,
                                           doctor: tuple[Account, str]) -> None:
    await russian_patient_in_browser(client)
    link = await screening_link(client)
    token = form_token(await page(client, link, headers=RU))
    answers = {**benign_answers(catalogue["respiratory"]), "chest_pain": True}
    response = await client.post("/book", data=booking_form(link, token, form_answers(catalogue["respiratory"],
                                                                                       answers)),
                                 headers=RU, allow_redirects=False)
    assert response.status == 422
    text = await response.text()
    assert "Вызовите скорую помощь: 103 (или 112)" in text
    assert "Боль в груди может быть признаком инфаркта." in text
    assert "Запись не создана." in text
    assert 'href="tel:103"' in text


async def test_booking_in_person_recommendation_books_nothing(client: TestClient, catalogue: Catalogue,
                                                             doctor: tuple[Account, str]) -> None:
    patient = await patient_in_browser(client)
    link = await screening_link(client)
    token = form_token(await page(client, link))
    answers = {**benign_answers(catalogue["respiratory"]), "cough_days": 30}
    response = await client.post("/book", data=booking_form(link, token, form_answers(catalogue["respiratory"],
                                                                                       answers)),
                                 headers=EN, allow_redirects=False)
    assert response.status == 422
    text = await response.text()
    assert 'data-testid="in-person"' in text
    assert "A cough lasting more than 3 weeks" in text
    assert 'data-testid="emergency"' not in text
    assert await consultations(client, patient) == []


async def test_booking_field_errors_keep_the_answers(client: TestClient, catalogue: Catalogue,
                                                    doctor: tuple[Account, str]) -> None:
    patient = await patient_in_browser(client)
    link = await screening_link(client)
    token = form_token(await page(client, link))
    sent = form_answers(catalogue["respiratory"], benign_answers(catalogue["respiratory"]))
    sent["answers.temperature"] = "37,2"  # a Russian decimal comma is fine
    sent["answers.cough_days"] = "400"  # out of range
    del sent["answers.chest_pain"]  # not answered
    response = await client.post("/book", data=booking_form(link, token, sent, complaint="Мой кашель"),
                                 headers=EN, allow_redirects=False)
    assert response.status == 422
    text = await response.text()
    assert 'data-testid="error-summary"' in text
    assert 'data-testid="error-chest_pain"' in text
    assert "Please answer this question." in text
    assert 'data-testid="error-cough_days"' in text
    assert "Please enter a number from 0 to 365." in text
    assert 'data-testid="error-temperature"' not in text
    assert 'value="37,2"' in text  # what was typed is kept
    assert 'value="400"' in text
    assert 'name="answers.breathless_severe" value="no" checked' in text
    assert "Мой кашель</textarea>" in text
    assert await consultations(client, patient) == []


async def test_booking_with_a_long_complaint_says_so(client: TestClient, catalogue: Catalogue,
                                                    doctor: tuple[Account, str]) -> None:
    await patient_in_browser(client)
    link = await screening_link(client)
    token = form_token(await page(client, link))
    sent = form_answers(catalogue["respiratory"], benign_answers(catalogue["respiratory"]))
    limit = client.app[keys.settings].complaint_max_chars
    response = await client.post("/book", data=booking_form(link, token, sent, complaint="а" * (limit + 1)),
                                 headers=EN, allow_redirects=False)
    assert response.status == 422
    assert 'data-testid="error-complaint"' in await response.text()


async def test_booking_a_slot_someone_just_took(client: TestClient, catalogue: Catalogue,
                                               doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    await patient_in_browser(client)
    link = await screening_link(client, physician_id=physician_id)
    token = form_token(await page(client, link))
    rival = await register_patient(client)
    starts_at = parse_qs(urlsplit(link).query)["starts_at"][0]
    taken = await client.post("/api/v1/consultations", headers=rival.auth,
                              json=booking(physician_id, starts_at, benign_answers(catalogue["respiratory"])))
    assert taken.status == 201
    sent = form_answers(catalogue["respiratory"], benign_answers(catalogue["respiratory"]))
    response = await client.post("/book", data=booking_form(link, token, sent), headers=EN, allow_redirects=False)
    assert response.status == 409
    text = await response.text()
    assert 'data-testid="top-error"' in text
    assert "Someone has just booked this time." in text
    assert 'value="no" checked' in text  # the answers stay
    # Opening the same step again says the time is gone instead of asking the questions.
    again = await page(client, link)
    assert 'data-testid="slot-gone"' in again
    assert 'data-testid="screening-form"' not in again


async def test_booking_overlapping_consultation_is_explained(client: TestClient, catalogue: Catalogue,
                                                            doctor: tuple[Account, str]) -> None:
    _, first_id = doctor
    _, second_id = await physician_on_duty(client)
    patient = await patient_in_browser(client)
    await book_via_api(client, catalogue, patient, first_id)
    link = await screening_link(client, physician_id=second_id)
    token = form_token(await page(client, link))
    sent = form_answers(catalogue["respiratory"], benign_answers(catalogue["respiratory"]))
    response = await client.post("/book", data=booking_form(link, token, sent), headers=EN, allow_redirects=False)
    assert response.status == 409
    assert "You already have a consultation at this time." in await response.text()


async def test_booking_repeat_without_a_diagnosis_offers_primary(client: TestClient, catalogue: Catalogue,
                                                                doctor: tuple[Account, str]) -> None:
    patient = await patient_in_browser(client)
    link = await screening_link(client, kind="repeat")
    assert "kind=repeat" in link
    token = form_token(await page(client, link))
    sent = form_answers(catalogue["respiratory"], benign_answers(catalogue["respiratory"]))
    response = await client.post("/book", data=booking_form(link, token, sent), headers=EN, allow_redirects=False)
    assert response.status == 422
    text = await response.text()
    assert 'data-testid="kind-error"' in text
    assert "we have no such diagnosis for you" in text
    assert "Book a primary consultation instead" in text
    assert "kind=primary" in "".join(links(text, "/book/screening?"))
    assert await consultations(client, patient) == []


# --- my consultations --------------------------------------------------------------------------------------------


async def test_my_consultations_lists_upcoming_past_and_cancelled(client: TestClient, catalogue: Catalogue,
                                                                 doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    patient = await patient_in_browser(client)
    consultation_id = await book_via_api(client, catalogue, patient, physician_id, index=12)
    text = await page(client, "/my/consultations")
    assert text.count('data-testid="consultation"') == 1
    assert f'href="/my/consultations/{consultation_id}"' in text
    assert "Staff physician" in text
    assert "Acute respiratory viral infection (common cold)" in text
    assert "Primary consultation" in text
    assert "Coming up" in text
    assert "(Moscow, UTC+3)" in text
    assert 'aria-current="page">Upcoming' in text
    assert 'data-testid="needs-reschedule"' not in text
    assert 'data-testid="no-consultations"' in await page(client, "/my/consultations?scope=cancelled")
    assert 'data-testid="no-consultations"' in await page(client, "/my/consultations?scope=past")
    async with transaction(client.app[keys.sessions]) as session:
        stored = await session.get(Consultation, uuid.UUID(consultation_id))
        assert stored is not None
        stored.needs_reschedule = True
    flagged = await page(client, "/my/consultations")
    assert 'data-testid="needs-reschedule"' in flagged
    assert "The physician&#39;s hours have changed. Please choose another time." in flagged


async def test_another_patients_consultation_is_not_found(client: TestClient, catalogue: Catalogue,
                                                         doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    owner = await register_patient(client)
    consultation_id = await book_via_api(client, catalogue, owner, physician_id, index=12)
    await patient_in_browser(client, full_name="Someone Else")
    for suffix in ("", "/reschedule", "/waiting-room"):
        text = await page(client, f"/my/consultations/{consultation_id}{suffix}", status=404)
        assert "Page not found" in text
    await page(client, f"/my/consultations/{uuid.uuid4()}", status=404)
    await page(client, "/my/consultations/not-a-uuid", status=404)
    token = form_token(await page(client, "/my/consultations"))
    for action, data in (("cancel", {}), ("reschedule", {"starts_at": "2030-01-01T10:00:00Z"}),
                         ("check-in", {})):
        response = await client.post(f"/my/consultations/{consultation_id}/{action}",
                                     data={"csrf_token": token, **data}, headers=EN, allow_redirects=False)
        assert response.status == 404, action
    assert 'data-testid="consultation"' not in await page(client, "/my/consultations")
    assert await status_of(client, consultation_id) is ConsultationStatus.scheduled


async def test_cancel_through_the_page(client: TestClient, catalogue: Catalogue, doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    patient = await patient_in_browser(client)
    consultation_id = await book_via_api(client, catalogue, patient, physician_id, index=12)
    text = await page(client, f"/my/consultations/{consultation_id}")
    assert 'data-testid="cancel-button"' in text
    assert 'data-testid="reschedule-link"' in text
    assert 'data-testid="too-late"' not in text
    assert 'data-testid="waiting-room-link"' not in text  # hours away: check-in is not open
    assert 'data-testid="checkin-later"' in text
    response = await client.post(f"/my/consultations/{consultation_id}/cancel", data={"csrf_token": form_token(text)},
                                 headers=EN, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"/my/consultations/{consultation_id}?cancelled=1"
    assert await status_of(client, consultation_id) is ConsultationStatus.cancelled
    after = await page(client, response.headers["Location"])
    assert 'data-testid="cancelled"' in after
    assert "Cancelled (will not take place)" in after
    assert 'data-testid="cancel-button"' not in after
    assert f'href="/my/consultations/{consultation_id}"' in await page(client, "/my/consultations?scope=cancelled")


async def test_reschedule_through_the_page(client: TestClient, catalogue: Catalogue,
                                           doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    patient = await patient_in_browser(client)
    consultation_id = await book_via_api(client, catalogue, patient, physician_id, index=12)
    before = (await consultations(client, patient))[0]["starts_at"]
    text = await page(client, f"/my/consultations/{consultation_id}/reschedule")
    choices = re.findall(r'name="starts_at" value="([^"]+)"', text)
    assert len(choices) > 5
    target = choices[20]
    assert "(Moscow, UTC+3)" in text
    response = await client.post(f"/my/consultations/{consultation_id}/reschedule",
                                 data={"csrf_token": form_token(text), "starts_at": target}, headers=EN,
                                 allow_redirects=False)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == f"/my/consultations/{consultation_id}?moved=1"
    moved = (await consultations(client, patient))[0]
    assert moved["starts_at"] != before
    assert dt.datetime.fromisoformat(moved["starts_at"]) == dt.datetime.fromisoformat(target)
    assert 'data-testid="moved"' in await page(client, response.headers["Location"])
    # Without a time chosen the form says so.
    empty = await client.post(f"/my/consultations/{consultation_id}/reschedule",
                              data={"csrf_token": form_token(text)}, headers=EN, allow_redirects=False)
    assert empty.status == 422
    assert "Please choose a time." in await empty.text()


async def test_too_late_to_change_hides_the_buttons(client: TestClient, catalogue: Catalogue,
                                                    doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    patient = await patient_in_browser(client)
    consultation_id = await book_via_api(client, catalogue, patient, physician_id)  # within 20 minutes
    text = await page(client, f"/my/consultations/{consultation_id}")
    assert 'data-testid="too-late"' in text
    assert "too late to change this consultation online. Please call the clinic." in text
    assert 'data-testid="cancel-button"' not in text
    assert 'data-testid="reschedule-link"' not in text
    assert 'data-testid="too-late"' in await page(client, f"/my/consultations/{consultation_id}/reschedule")
    token = form_token(text)
    refused = await client.post(f"/my/consultations/{consultation_id}/cancel", data={"csrf_token": token},
                                headers=EN, allow_redirects=False)
    assert refused.status == 409
    assert 'data-testid="action-error"' in await refused.text()
    later = await free_slot(client, patient, physician_id, 15)
    moved = await client.post(f"/my/consultations/{consultation_id}/reschedule",
                              data={"csrf_token": token, "starts_at": later}, headers=EN, allow_redirects=False)
    assert moved.status == 409
    assert "Please call the clinic." in await moved.text()
    assert await status_of(client, consultation_id) is ConsultationStatus.scheduled


# --- the waiting room --------------------------------------------------------------------------------------------


async def test_check_in_through_the_page(open_clinic: dict[str, Any]) -> None:
    client, consultation_id = open_clinic["client"], open_clinic["consultation"]
    detail = await page(client, f"/my/consultations/{consultation_id}")
    assert 'data-testid="waiting-room-link"' in detail
    text = await page(client, f"/my/consultations/{consultation_id}/waiting-room")
    assert 'data-testid="device-check"' in text
    assert '<video data-preview' in text
    assert 'name="camera" value="false"' in text
    assert 'name="problems" value="no_js"' in text
    assert '<script src="/static/patient.js' in text
    assert "<script>" not in text  # the CSP allows no inline scripts
    for question in open_clinic["catalogue"]["checkin"].questions:
        assert f'name="answers.{question.id}"' in text
    sent = form_answers(open_clinic["catalogue"]["checkin"], benign_answers(open_clinic["catalogue"]["checkin"]))
    response = await client.post(f"/my/consultations/{consultation_id}/check-in", headers=EN, allow_redirects=False,
                                 data={"csrf_token": form_token(text), **sent, "camera": "true",
                                       "microphone": "true", "speaker": "false", "browser": "Chrome 131 (Android)",
                                       "problems": "speaker_not_heard"})
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == f"/my/consultations/{consultation_id}/waiting-room"
    assert await status_of(client, consultation_id) is ConsultationStatus.waiting
    waiting = await page(client, response.headers["Location"])
    assert "You are in the waiting room" in waiting
    assert f'data-status-url="/api/v1/consultations/{consultation_id}"' in waiting
    assert 'data-status="waiting"' in waiting
    assert 'hidden data-testid="admitted"' in waiting
    detail = await (await client.get(f"/api/v1/consultations/{consultation_id}",
                                     headers=open_clinic["patient"].auth)).json()
    assert detail["device_check"] == {"camera": True, "microphone": True, "speaker": False,
                                      "browser": "Chrome 131 (Android)", "problems": ["speaker_not_heard"]}
    # The physician lets the patient in: the page (and the status it polls) says so.
    admitted = await client.post(f"/api/v1/consultations/{consultation_id}/admit", headers=open_clinic["doctor"].auth)
    assert admitted.status == 200
    polled = await client.get(f"/api/v1/consultations/{consultation_id}")  # what patient.js fetches, by cookie
    assert (await polled.json())["status"] == "in_call"
    inside = await page(client, f"/my/consultations/{consultation_id}/waiting-room")
    assert re.search(r'<div data-admitted-state data-testid="admitted">\s*<h1>The physician has let you in', inside)


async def test_check_in_without_scripts_still_enters(open_clinic: dict[str, Any]) -> None:
    client, consultation_id = open_clinic["client"], open_clinic["consultation"]
    text = await page(client, f"/my/consultations/{consultation_id}/waiting-room")
    defaults = dict(re.findall(r'<input type="hidden" name="(camera|microphone|speaker|browser|problems)" '
                               r'value="([^"]*)"', text))
    sent = form_answers(open_clinic["catalogue"]["checkin"], benign_answers(open_clinic["catalogue"]["checkin"]))
    response = await client.post(f"/my/consultations/{consultation_id}/check-in", headers=EN, allow_redirects=False,
                                 data={"csrf_token": form_token(text), **sent, **defaults})
    assert response.status == 303
    detail = await (await client.get(f"/api/v1/consultations/{consultation_id}",
                                     headers=open_clinic["patient"].auth)).json()
    assert detail["device_check"] == {"camera": False, "microphone": False, "speaker": False, "browser": "",
                                      "problems": ["no_js"]}


async def test_check_in_field_error_keeps_the_answers(open_clinic: dict[str, Any]) -> None:
    client, consultation_id = open_clinic["client"], open_clinic["consultation"]
    text = await page(client, f"/my/consultations/{consultation_id}/waiting-room")
    sent = form_answers(open_clinic["catalogue"]["checkin"], benign_answers(open_clinic["catalogue"]["checkin"]))
    sent["answers.temperature"] = "hot"
    response = await client.post(f"/my/consultations/{consultation_id}/check-in", headers=EN, allow_redirects=False,
                                 data={"csrf_token": form_token(text), **sent})
    assert response.status == 422
    body = await response.text()
    assert 'data-testid="error-temperature"' in body
    assert 'value="hot"' in body
    assert await status_of(client, consultation_id) is ConsultationStatus.scheduled


async def test_check_in_red_flag_shows_the_emergency_page(open_clinic: dict[str, Any]) -> None:
    client, consultation_id = open_clinic["client"], open_clinic["consultation"]
    text = await page(client, f"/my/consultations/{consultation_id}/waiting-room")
    answers = {**benign_answers(open_clinic["catalogue"]["checkin"]), "stroke_signs": True}
    response = await client.post(f"/my/consultations/{consultation_id}/check-in", headers=EN, allow_redirects=False,
                                 data={"csrf_token": form_token(text),
                                       **form_answers(open_clinic["catalogue"]["checkin"], answers)})
    assert response.status == 422
    body = await response.text()
    assert 'data-testid="emergency"' in body
    assert "Call an ambulance: 103 (or 112)" in body
    assert 'href="tel:103"' in body
    assert "These may be signs of a stroke" in body
    assert "The video consultation will not take place." in body
    assert await status_of(client, consultation_id) is ConsultationStatus.refused
    # The waiting room is closed now; the page leads back to the consultation.
    again = await client.get(f"/my/consultations/{consultation_id}/waiting-room", headers=EN, allow_redirects=False)
    assert again.status == 302
    assert again.headers["Location"] == f"/my/consultations/{consultation_id}"


async def test_waiting_room_before_it_opens(client: TestClient, catalogue: Catalogue,
                                            doctor: tuple[Account, str]) -> None:
    _, physician_id = doctor
    patient = await patient_in_browser(client)
    consultation_id = await book_via_api(client, catalogue, patient, physician_id, index=12)
    text = await page(client, f"/my/consultations/{consultation_id}/waiting-room")
    assert 'data-testid="checkin-closed"' in text
    assert "The waiting room opens 15 minutes before the start" in text
    assert 'data-testid="checkin-form"' not in text
    sent = form_answers(catalogue["checkin"], benign_answers(catalogue["checkin"]))
    response = await client.post(f"/my/consultations/{consultation_id}/check-in", headers=EN, allow_redirects=False,
                                 data={"csrf_token": form_token(text), **sent})
    assert response.status == 409
    assert "The waiting room is not open for this consultation now." in await response.text()
    assert await status_of(client, consultation_id) is ConsultationStatus.scheduled


# --- languages, access, CSRF -------------------------------------------------------------------------------------


async def test_patient_pages_render_in_russian(open_clinic: dict[str, Any]) -> None:
    client, consultation_id = open_clinic["client"], open_clinic["consultation"]
    client.session.cookie_jar.clear()
    await russian_patient_in_browser(client)
    expected = {
        "/book": "По какому поводу консультация?",
        "/book?condition=arvi": "Свободное время",
        "/my/consultations": "Мои консультации",
        "/my/consultations?scope=past": "Прошедшие",
    }
    for path, words in expected.items():
        response = await client.get(path, headers=RU)
        assert response.status == 200, path
        assert response.headers["Content-Language"] == "ru"
        text = await response.text()
        assert words in text, path
        assert '<html lang="ru">' in text
    screening = await page(client, await screening_link(client), headers=RU)
    assert "Какая у вас температура сейчас?" in screening
    assert "Записаться" in screening
    assert "(Москва, UTC+3)" in screening
    assert "What is your temperature now?" not in screening
    await page(client, f"/my/consultations/{consultation_id}", status=404, headers=RU)


async def test_consultation_and_waiting_room_pages_in_both_languages(open_clinic: dict[str, Any]) -> None:
    client, consultation_id = open_clinic["client"], open_clinic["consultation"]
    paths = [f"/my/consultations/{consultation_id}", f"/my/consultations/{consultation_id}/waiting-room",
             f"/my/consultations/{consultation_id}/reschedule", "/my/consultations"]
    english = {path: await page(client, path) for path in paths}
    assert "Go to the waiting room" in english[paths[0]]
    assert "Check your camera, microphone and sound" in english[paths[1]]
    assert "Choose another time" in english[paths[2]]
    assert "Upcoming" in english[paths[3]]
    switched = await client.get("/lang/ru", params={"next": "/"}, allow_redirects=False)
    assert switched.status == 303
    russian = {path: await page(client, path) for path in paths}
    assert "Перейти в зал ожидания" in russian[paths[0]]
    assert "Проверьте камеру, микрофон и звук" in russian[paths[1]]
    assert "Какая сейчас температура тела?" in russian[paths[1]]
    assert "Выбрать другое время" in russian[paths[2]]
    assert "Предстоящие" in russian[paths[3]]
    assert "Предстоит" in russian[paths[3]]
    for text in russian.values():
        assert "Go to the waiting room" not in text
        assert "Please call the clinic" not in text


@pytest.mark.parametrize("action", ["book", "cancel", "reschedule", "check-in"])
async def test_every_form_needs_its_csrf_token(open_clinic: dict[str, Any], action: str) -> None:
    client, consultation_id = open_clinic["client"], open_clinic["consultation"]
    await page(client, "/my/consultations")  # the browser holds the CSRF cookie
    path = "/book" if action == "book" else f"/my/consultations/{consultation_id}/{action}"
    sent = form_answers(open_clinic["catalogue"]["checkin"], benign_answers(open_clinic["catalogue"]["checkin"]))
    for token in (None, "stale"):
        data = {**sent, **({"csrf_token": token} if token else {})}
        response = await client.post(path, data=data, headers=EN, allow_redirects=False)
        assert response.status == 403
        assert "The form has expired" in await response.text()
    assert await status_of(client, consultation_id) is ConsultationStatus.scheduled
    assert len(await consultations(client, open_clinic["patient"])) == 1


@pytest.mark.parametrize("path", ["/book", "/book/screening?condition=arvi", "/my/consultations",
                                  f"/my/consultations/{uuid.UUID(int=1)}/waiting-room"])
async def test_patient_pages_send_anonymous_visitors_to_sign_in(client: TestClient, path: str) -> None:
    response = await client.get(path, headers=EN, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith("/login?next=")


async def test_patient_pages_are_not_for_staff(client: TestClient, catalogue: Catalogue) -> None:
    physician = await create_staff(client, Role.physician, signed_in=False)
    assert (await form_login(client, physician.email, PASSWORD)).status == 303
    for path in ("/book", "/my/consultations"):
        assert 'data-testid="error-page"' in await page(client, path, status=404)


async def test_static_files_are_served(client: TestClient) -> None:
    script = await client.get("/static/patient.js")
    assert script.status == 200
    assert "getUserMedia" in await script.text()
    assert "AnalyserNode" in await script.text() or "createAnalyser" in await script.text()
    assert "createOscillator" in await script.text()
    style = await client.get("/static/patient.css")
    assert style.status == 200


async def test_screening_page_offers_a_time_just_after_midnight_in_the_physicians_zone(
        open_clinic: dict[str, Any]) -> None:
    """A slot at 01:00 in Moscow is on the previous day in UTC: the page must still find it free (it once looked
    for it on the UTC day and said it was taken)."""
    client = open_clinic["client"]
    link = await screening_link(client)
    query = parse_qs(urlsplit(link).query)
    moscow = ZoneInfo("Europe/Moscow")
    night = dt.datetime.combine(dt.datetime.now(moscow).date() + dt.timedelta(days=2), dt.time(1, 0), moscow)
    query["starts_at"] = [night.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")]
    screening = await page(client, "/book/screening?" + urlencode({k: v[0] for k, v in query.items()}))
    assert "What is your temperature now?" in screening
    assert "This time is no longer free" not in screening
