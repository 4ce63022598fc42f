"""The whole visit before the call, in two real browsers: a patient on a phone books, passes the screening,
checks in with a device check on fake camera and microphone; the physician sees them arrive live and admits."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect

from server.audit.services import AuditContext
from server.db.base import utcnow
from server.db.engine import create_engine, create_sessionmaker, transaction
from server.scheduling.catalogue import load_questionnaires
from tests.consent_helpers import offline_setup, sign_in_session
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.seeding import DOCTOR_EMAIL, seed_clinic
from tests.factories import PASSWORD
from tests.scheduling_helpers import benign_answers

PATIENT_EMAIL = "anna@example.org"
SCREENSHOT = Path("/tmp/e2e-waiting-room.png")  # noqa: S108  # a fixed place to look at after a run


async def _clinic(database_url: str, data_dir: Path) -> str:
    """The catalogue, a physician working round the clock (so a slot is always near), and a patient."""
    engine = create_engine(database_url, null_pool=True)
    ctx, now = AuditContext(actor_role="test"), utcnow()
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            seeded = await seed_clinic(session, patient_email=PATIENT_EMAIL, patient_name="Анна Сергеевна Иванова",
                                       birth_date=dt.date(1949, 5, 9), phone="+79160001122", ctx=ctx, now=now)
            physician, user, patient = seeded.physician, seeded.user, seeded.patient
            # She signed her consents at an earlier visit (signing itself is tests/e2e/test_consent_flow.py).
            await sign_in_session(session, patient_id=patient.id, user_id=user.id, setup=offline_setup(data_dir))
            return str(physician.id)
    finally:
        await engine.dispose()


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Эл. почта").fill(email)
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(f"{base}/")


def _answer(page: Page, questionnaire: str) -> None:
    """Fill the screening form with harmless answers, as a person would: type numbers, tick radios."""
    definition = load_questionnaires()[questionnaire]
    for question_id, value in benign_answers(definition).items():
        name = f"answers.{question_id}"
        if isinstance(value, bool):
            page.locator(f'input[name="{name}"][value="{"yes" if value else "no"}"]').check()
        elif isinstance(value, str):
            page.locator(f'input[name="{name}"][value="{value}"]').check()
        else:
            page.locator(f'input[name="{name}"]').fill(f"{value:g}".replace(".", ","))


@pytest.mark.e2e
def test_patient_books_checks_in_and_is_admitted(live_server: str, database_url: str, phone_browser: BrowserContext,
                                                 playwright_driver: Playwright, tmp_path: Path) -> None:
    base = live_server
    # Playwright's sync API keeps a loop running in this thread; the seeding gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        physician_id = pool.submit(lambda: asyncio.run(_clinic(database_url, tmp_path / "seed"))).result()

    # The patient, on a phone in Russian: reason, time, screening.
    patient = phone_browser.new_page()
    _sign_in(patient, base, PATIENT_EMAIL)
    patient.get_by_role("link", name="Записаться на консультацию").click()
    patient.get_by_test_id("condition-arvi").click()
    patient.goto(f"{patient.url}&kind=primary&physician_id={physician_id}")
    patient.get_by_test_id("slot").first.click()
    expect(patient.get_by_test_id("screening-form")).to_be_visible()
    _answer(patient, "respiratory")
    patient.get_by_label(re.compile("Опишите|жалоб", re.IGNORECASE)).first.fill("Кашель и насморк третий день")
    patient.get_by_test_id("book-submit").click()
    expect(patient.get_by_test_id("booked")).to_be_visible()

    # The physician opens the waiting room on a desktop browser and keeps it open.
    doctor_context = playwright_driver.chromium.launch_persistent_context(
        tmp_path / "doctor-profile", executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900}, locale="ru-RU", timezone_id="Europe/Moscow")
    doctor_context.set_default_timeout(15_000)
    try:
        doctor = doctor_context.new_page()
        _sign_in(doctor, base, DOCTOR_EMAIL)
        doctor.goto(f"{base}/clinic/waiting-room")
        expect(doctor.get_by_test_id("queue-item")).to_have_count(0)

        # Check-in: the short screening again, and the device check with the fake camera and microphone.
        patient.goto(patient.url.split("?")[0] + "/waiting-room")
        patient.locator('[data-action="start-devices"]').click()
        expect(patient.locator('input[name="camera"]')).to_have_value("true")
        expect(patient.locator('input[name="microphone"]')).to_have_value("true")
        patient.locator('[data-action="play-tone"]').click()
        patient.locator('[data-action="heard-yes"]').click()
        expect(patient.locator('input[name="speaker"]')).to_have_value("true")
        _answer(patient, "checkin")
        patient.get_by_test_id("checkin-submit").click()
        expect(patient.get_by_test_id("waiting")).to_be_visible()

        # The physician sees the patient arrive without reloading, with the device check, and admits.
        item = doctor.get_by_test_id("queue-item")
        expect(item).to_have_count(1)
        expect(item).to_contain_text("Анна Сергеевна Иванова")
        doctor.screenshot(path=str(SCREENSHOT), full_page=True)
        doctor.get_by_test_id("admit").click()
        expect(doctor.get_by_test_id("queue-item")).to_have_count(0)
    finally:
        doctor_context.close()

    # The patient's waiting page notices the admission by itself.
    expect(patient.get_by_test_id("admitted")).to_be_visible(timeout=15_000)
