"""The video consultation in real browsers: the physician on a desktop and the patient on a phone join through
the server, each sees the other's video advancing (`framesDecoded` rising in `getStats()`), the patient's mute
shows on the physician's page, chat goes both ways; the physician invites an interpreter by link, who joins from
a third browser and sees and is seen by both; and the physician ends the consultation: `completed`.

Media stays on 127.0.0.1: the live server runs with TELEMED_ENV=test, which pins its ICE to loopback (it gathers
127.0.0.1 only and ignores the browsers' other candidates); Chromium needs `--allow-loopback-in-peer-connection`
to offer a loopback candidate at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect

from server.db.engine import create_engine, create_sessionmaker
from server.scheduling.models import Consultation, ConsultationStatus
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE_VIEWPORT
from tests.e2e.seeding import DOCTOR_EMAIL, PATIENT_EMAIL, admitted_consultation
from tests.factories import PASSWORD
from tests.services import wait_until

CALL_ARGS = [*CHROMIUM_ARGS, "--allow-loopback-in-peer-connection",
             "--use-fake-device-for-media-stream=fps=30"]
SCREENSHOTS = Path("/tmp")  # noqa: S108  # e2e-call-*.png: a fixed place to look at after a run


async def _status(database_url: str, consultation_id: str) -> ConsultationStatus:
    engine = create_engine(database_url, null_pool=True)
    try:
        async with create_sessionmaker(engine)() as session:
            consultation = await session.get(Consultation, uuid.UUID(consultation_id))
            assert consultation is not None
            return consultation.status
    finally:
        await engine.dispose()


def _status_now(database_url: str, consultation_id: str) -> ConsultationStatus:
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps a loop in this thread
        return pool.submit(lambda: asyncio.run(_status(database_url, consultation_id))).result()


@pytest.fixture
def three_browsers(playwright_driver: Playwright,
                   tmp_path: Path) -> Iterator[tuple[BrowserContext, BrowserContext, BrowserContext]]:
    """The physician's desktop browser, the patient's phone (Russian) and an interpreter's laptop (English), each
    with its own profile and fake devices."""
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CALL_ARGS)
    try:
        physician = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB",
                                        timezone_id="Europe/Moscow", permissions=["camera", "microphone"])
        patient = browser.new_context(viewport=PHONE_VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True,
                                      locale="ru-RU", timezone_id="Europe/Moscow",
                                      permissions=["camera", "microphone"])
        guest = browser.new_context(viewport={"width": 1024, "height": 768}, locale="en-GB",
                                    timezone_id="Europe/Moscow", permissions=["camera", "microphone"])
        for context in (physician, patient, guest):
            context.set_default_timeout(15_000)
        yield physician, patient, guest
    finally:
        browser.close()


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.locator('input[name="email"]').fill(email)
    page.locator('input[name="password"]').fill(PASSWORD)
    page.locator('form[action="/login"] button[type="submit"]').click()
    page.wait_for_url(f"{base}/")


def _seeded(database_url: str, tmp_path: Path, *, admitted: bool = True) -> str:
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps a loop in this thread
        return pool.submit(lambda: asyncio.run(
            admitted_consultation(database_url, tmp_path / "seed", admitted=admitted))).result()


def _invited_guest(doctor: Page, base: str, consultation: str, guest: BrowserContext, *, name: str,
                   relation: str) -> Page:
    """The physician invites from the consultation's page; the guest opens the link, says who they are, clicks
    Join: their call page."""
    doctor.goto(f"{base}/clinic/consultations/{consultation}")
    doctor.get_by_test_id("invite").click()
    page = guest.new_page()
    page.goto(doctor.get_by_test_id("invitation-link").input_value())
    page.locator('input[name="name"]').fill(name)
    page.locator('select[name="relation"]').select_option(relation)
    page.get_by_test_id("recorded").check()
    page.get_by_test_id("guest-submit").click()
    page.get_by_test_id("join").click()
    return page


def _frames_decoded(page: Page) -> int:
    return int(page.get_by_test_id("quality").get_attribute("data-frames-decoded") or 0)


def _sees_video(page: Page, test_id: str = "remote-video") -> None:
    """The remote video advances: framesDecoded from getStats() grows between two readings, and the video element
    `test_id` shows a picture."""
    assert wait_until(lambda: _frames_decoded(page) > 0, timeout=20), "no remote video frame decoded"
    first = _frames_decoded(page)
    assert wait_until(lambda: _frames_decoded(page) >= first + 20, timeout=10), "the remote video stopped"
    assert wait_until(lambda: page.get_by_test_id(test_id).evaluate("video => video.videoWidth") > 0, timeout=10)


@pytest.mark.e2e
def test_physician_and_patient_hold_a_video_consultation_with_an_invited_interpreter(
        live_server: str, database_url: str, three_browsers: tuple[BrowserContext, BrowserContext, BrowserContext],
        tmp_path: Path) -> None:
    base = live_server
    consultation = _seeded(database_url, tmp_path)
    physician_context, patient_context, guest_context = three_browsers

    doctor = physician_context.new_page()
    _sign_in(doctor, base, DOCTOR_EMAIL)
    doctor.goto(f"{base}/clinic/consultations/{consultation}")
    doctor.get_by_test_id("open-call").click()
    doctor.wait_for_url(f"{base}/clinic/consultations/{consultation}/call")
    doctor.get_by_test_id("join").click()
    expect(doctor.get_by_test_id("remote-state")).to_contain_text("Ждём, когда подключится пациент")

    patient = patient_context.new_page()
    _sign_in(patient, base, PATIENT_EMAIL)
    patient.goto(f"{base}/my/consultations/{consultation}/waiting-room")
    patient.get_by_test_id("call-link").click()
    patient.wait_for_url(f"{base}/my/consultations/{consultation}/call")
    patient.get_by_test_id("join").click()

    for page in (doctor, patient):
        expect(page.locator("[data-call]")).to_have_attribute("data-state", "in_call")
    _sees_video(doctor)
    _sees_video(patient)
    expect(patient.get_by_test_id("recording")).to_be_visible()  # the patient consented to recording
    assert _status_now(database_url, consultation) is ConsultationStatus.in_call

    # The patient mutes: the physician's page shows it, and says it.
    patient.get_by_test_id("mute").click()
    expect(patient.get_by_test_id("mute")).to_have_attribute("aria-pressed", "true")
    expect(doctor.get_by_test_id("remote-muted")).to_be_visible()
    expect(doctor.locator("[data-announce]")).to_contain_text("микрофон выключен")  # the physician reads Russian

    # Chat both ways, shown as text.
    patient.get_by_test_id("chat-text").fill("Меня <b>слышно</b>?")
    patient.get_by_test_id("chat-send").click()
    expect(doctor.get_by_test_id("chat-log")).to_contain_text("Меня слышно?")
    expect(patient.get_by_test_id("chat-log")).to_contain_text("Меня слышно?")

    # The physician invites an interpreter: a link, opened in a third browser, a name and a relation, the call.
    interpreter = _invited_guest(physician_context.new_page(), base, consultation, guest_context,
                                 name="Olga Translator", relation="interpreter")
    expect(interpreter.locator("[data-call]")).to_have_attribute("data-state", "in_call")
    _sees_video(interpreter, "remote-video")  # the physician
    _sees_video(interpreter, "remote-video-2")  # the patient
    for page in (doctor, patient):
        expect(page.get_by_test_id("remote-2")).to_be_visible()
        expect(page.get_by_test_id("remote-2")).to_contain_text("Olga Translator")
        _sees_video(page, "remote-video-2")
    doctor.screenshot(path=str(SCREENSHOTS / "e2e-call-physician.png"), full_page=True)
    patient.screenshot(path=str(SCREENSHOTS / "e2e-call-patient.png"), full_page=True)
    interpreter.screenshot(path=str(SCREENSHOTS / "e2e-call-guest.png"), full_page=True)

    # The physician ends the consultation for everyone.
    doctor.on("dialog", lambda dialog: dialog.accept())
    doctor.get_by_test_id("end").click()
    for page in (doctor, patient, interpreter):
        expect(page.locator("[data-call]")).to_have_attribute("data-state", "done")
    expect(patient.get_by_test_id("done")).to_contain_text("Консультация завершена")
    assert _status_now(database_url, consultation) is ConsultationStatus.completed


@pytest.mark.e2e
def test_a_guest_who_comes_before_the_call_starts_waits_and_is_connected_when_it_does(
        live_server: str, database_url: str, three_browsers: tuple[BrowserContext, BrowserContext, BrowserContext],
        tmp_path: Path) -> None:
    base = live_server
    consultation = _seeded(database_url, tmp_path, admitted=False)
    physician_context, _, guest_context = three_browsers
    doctor = physician_context.new_page()
    _sign_in(doctor, base, DOCTOR_EMAIL)
    relative = _invited_guest(doctor, base, consultation, guest_context, name="Pavel Relative", relation="family")
    expect(relative.locator("[data-call]")).to_have_attribute("data-state", "waiting")  # not let in yet
    expect(relative.get_by_test_id("banner")).to_contain_text("has not started yet")

    doctor.get_by_test_id("admit").click()  # the physician lets the patient in: the call may start
    expect(relative.locator("[data-call]")).to_have_attribute("data-state", "in_call", timeout=20_000)
    expect(relative.get_by_test_id("banner")).to_be_hidden()
