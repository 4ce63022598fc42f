"""A recorded consultation from the call to the medical record, in Debian Chromium with fake devices.

The physician and the patient hold a short call; the physician ends it and signs the protocol; the Celery worker
finalises the recording; the physician's record page shows the signed protocol and the complete recording, and
the player plays both participants' videos together (their `currentTime` advances).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from media.recording.models import FINAL_STATES, Recording
from server.db.engine import create_engine, create_sessionmaker
from server.scheduling.models import Consultation, ConsultationStatus
from tests.e2e.conftest import serve_process
from tests.e2e.seeding import DOCTOR_EMAIL, PATIENT_EMAIL
from tests.e2e.test_call_flow import _seeded, _sees_video, _sign_in, _status_now, three_browsers  # noqa: F401
from tests.services import server_env, server_process

CALL_SECONDS = 6


@pytest.fixture
def server_and_worker(tmp_path: Path, database_url: str) -> Iterator[str]:
    """The live server and a Celery worker (which finalises recordings) on the same data and database."""
    env = server_env(TELEMED_ENV="test", TELEMED_DATA_DIR=tmp_path / "server-var", TELEMED_DATABASE_URL=database_url)
    with serve_process(tmp_path, database_url) as (base, _), \
            server_process("worker", "--no-beat", env=env, cwd=tmp_path) as worker:
        worker.wait_for_output(" ready.", timeout=60)
        yield base


async def _recording_state(database_url: str, consultation: str) -> tuple[str | None, str]:
    engine = create_engine(database_url, null_pool=True)
    try:
        async with create_sessionmaker(engine)() as session:
            recording = (await session.scalars(select(Recording).where(
                Recording.consultation_id == uuid.UUID(consultation)))).first()
            patient = (await session.get(Consultation, uuid.UUID(consultation)))
            assert patient is not None
            return (recording.state.value if recording is not None and recording.state in FINAL_STATES else None,
                    str(patient.patient_id))
    finally:
        await engine.dispose()


def _finalised(database_url: str, consultation: str, timeout: float = 90) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps a loop in this thread
        while True:
            state, patient = pool.submit(lambda: asyncio.run(_recording_state(database_url, consultation))).result()
            if state is not None:
                return state, patient
            assert time.monotonic() < deadline, "the worker did not finalise the recording"
            time.sleep(0.5)


def recorded_call(doctor: Page, patient: Page, base: str, consultation: str, database_url: str) -> None:
    """Both sign in and join, see each other, talk for a few seconds while recorded; the physician ends it."""
    doctor.on("dialog", lambda dialog: dialog.accept())  # "End the consultation for everyone?"
    _sign_in(doctor, base, DOCTOR_EMAIL)
    doctor.goto(f"{base}/clinic/consultations/{consultation}/call")
    doctor.get_by_test_id("join").click()
    _sign_in(patient, base, PATIENT_EMAIL)
    patient.goto(f"{base}/my/consultations/{consultation}/call")
    patient.get_by_test_id("join").click()
    _sees_video(doctor)
    _sees_video(patient)
    expect(patient.get_by_test_id("recording")).to_be_visible()
    time.sleep(CALL_SECONDS)
    doctor.get_by_test_id("end").click()
    expect(patient.locator("[data-done]")).to_be_visible()
    assert _status_now(database_url, consultation) is ConsultationStatus.completed


def _current_times(page: Page) -> list[float]:
    return [float(t) for t in page.locator("video").evaluate_all("videos => videos.map(v => v.currentTime)")]


@pytest.mark.e2e
def test_a_recorded_call_ends_up_signed_and_playable_in_the_medical_record(
        server_and_worker: str, database_url: str,
        three_browsers: tuple[BrowserContext, BrowserContext, BrowserContext],  # noqa: F811  # the fixture
        tmp_path: Path) -> None:
    base = server_and_worker
    consultation = _seeded(database_url, tmp_path)
    physician_context, patient_context, _ = three_browsers

    doctor = physician_context.new_page()
    recorded_call(doctor, patient_context.new_page(), base, consultation, database_url)

    # The physician writes and signs the protocol: the consultation is documented.
    doctor.goto(f"{base}/clinic/consultations/{consultation}/protocol")
    doctor.locator("#p-complaints").fill("Кашель третий день")
    doctor.locator("#p-assessment").fill("ОРВИ, лёгкое течение")
    doctor.locator("#p-recommendations").fill("Обильное питьё; очный приём при температуре выше 38,5")
    doctor.get_by_test_id("sign").click()
    expect(doctor.get_by_test_id("version-row")).to_have_count(1)
    assert _status_now(database_url, consultation) is ConsultationStatus.documented

    # The worker has finalised the recording: the record shows it, with the protocol.
    state, patient_id = _finalised(database_url, consultation)
    assert state == "complete"
    doctor.goto(f"{base}/clinic/patients/{patient_id}/record")
    encounter = doctor.locator(f'[data-testid="encounter"][data-id="{consultation}"]')
    expect(encounter.get_by_test_id("record-protocol")).to_contain_text("1")
    expect(encounter.get_by_test_id("record-recording")).to_have_attribute("data-state", "complete")
    encounter.get_by_test_id("play-recording").click()
    expect(doctor.get_by_test_id("player")).to_be_visible()
    expect(doctor.locator("video")).to_have_count(2)
    doctor.get_by_test_id("play").click()
    time.sleep(2.5)
    times = _current_times(doctor)
    assert all(t > 1.0 for t in times), f"the videos do not play: currentTime {times}"
    assert max(times) - min(times) < 0.5, f"the videos play apart: {times}"
    doctor.screenshot(path=str(Path("/tmp") / "e2e-record-player.png"), full_page=True)  # noqa: S108
