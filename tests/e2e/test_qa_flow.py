"""The QA audit end to end, in Debian Chromium with fake devices.

A physician and a patient hold a short recorded call; the worker finalises the recording; the sampling and
assignment runs (the Celery tasks' services) give it to the QA expert. The expert opens the review from their
queue, plays the recording (both participants advance together), answers every checklist item (autosaved),
pins a moment and submits; the physician reads the review and acknowledges it; the clinic's report shows the
physician's sampled share and the review's score.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from qa_audit import assignment, services
from qa_audit.models import Review
from qa_audit.rules import DEFAULT_CHECKLIST
from server.audit.models import AuditEntry
from server.audit.services import AuditContext
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import create_engine, create_sessionmaker, transaction
from server.keyring import load_qa_secrets
from server.people import services as people
from tests.conftest import make_settings
from tests.e2e.seeding import PASSWORDS
from tests.e2e.test_call_flow import _seeded, _sign_in, three_browsers  # noqa: F401
from tests.e2e.test_record_flow import _finalised, recorded_call, server_and_worker  # noqa: F401
from tests.factories import PASSWORD

EXPERT_EMAIL = "expert@clinic.example"
ITEMS = [item["key"] for item in DEFAULT_CHECKLIST["items"]]


def _in_thread(work: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps a loop in this thread
        return pool.submit(lambda: asyncio.run(work())).result()


def _sampled_and_assigned(database_url: str, data_dir: Path) -> str:
    """What the beat tasks do every two minutes, done now: an expert account, the sampling decision (a
    physician's first consultations are always sampled) and the assignment; the review's id."""
    settings = make_settings(data_dir.parent, database_url, data_dir=data_dir)

    async def work() -> str:
        engine = create_engine(database_url, null_pool=True)
        try:
            async with transaction(create_sessionmaker(engine)) as session:
                await people.create_staff(session, passwords=PASSWORDS, role=Role.qa_expert, email=EXPERT_EMAIL,
                                          password=PASSWORD, full_name="Ольга Николаевна Экспертова",
                                          ctx=AuditContext(actor_role="test"), now=utcnow())
            async with transaction(create_sessionmaker(engine)) as session:
                decided = await services.sample_pending(session, secrets=load_qa_secrets(settings),
                                                        policy=services.policy_from(settings),
                                                        zone=ZoneInfo(settings.clinic_time_zone),
                                                        now=utcnow())
                assert decided == 1
                [review] = await assignment.assign_pending(session, settings=settings, now=utcnow())
                return str(review.id)
        finally:
            await engine.dispose()

    return str(_in_thread(work))


def _recording_plays(database_url: str) -> list[tuple[str | None, str | None]]:
    async def work() -> list[tuple[str | None, str | None]]:
        engine = create_engine(database_url, null_pool=True)
        try:
            async with create_sessionmaker(engine)() as session:
                rows = (await session.scalars(select(AuditEntry).where(
                    AuditEntry.action == "recording.played"))).all()
                return [(row.actor_role, (row.detail or {}).get("participant")) for row in rows]
        finally:
            await engine.dispose()

    return list(_in_thread(work))


def _review_row(database_url: str, review_id: str) -> tuple[str, float | None]:
    async def work() -> tuple[str, float | None]:
        engine = create_engine(database_url, null_pool=True)
        try:
            async with create_sessionmaker(engine)() as session:
                review = await session.get_one(Review, uuid.UUID(review_id))
                return review.status.value, review.score
        finally:
            await engine.dispose()

    return tuple(_in_thread(work))  # type: ignore[return-value]


def _reviews_the_consultation(expert: Page, base: str, review_id: str) -> None:
    """From the queue: play both participants together, answer every item (one "no" with its reason and the
    moment pinned), see it autosaved, submit."""
    expert.goto(f"{base}/qa/queue")
    row = expert.locator(f'[data-testid="queue-row"][data-review="{review_id}"]')
    expect(row).to_have_attribute("data-status", "assigned")
    row.get_by_test_id("open-review").click()
    expect(expert.get_by_test_id("qa-review")).to_be_visible()
    expect(expert.get_by_test_id("qa-player").locator("video")).to_have_count(2)
    expert.get_by_test_id("qa-player").get_by_test_id("play").click()
    time.sleep(2.5)
    times = [float(t) for t in expert.get_by_test_id("qa-player").locator("video").evaluate_all(
        "videos => videos.map(v => v.currentTime)")]
    assert all(t > 1.0 for t in times), f"the recording does not play: currentTime {times}"
    assert max(times) - min(times) < 0.5, f"the participants play apart: {times}"
    expert.get_by_test_id("qa-player").get_by_test_id("play").click()  # pause at the moment to pin

    for key in ITEMS:
        expert.get_by_test_id(f"answer-{key}-{'no' if key == 'communication' else 'yes'}").check()
    expert.get_by_test_id("comment-communication").fill("Interrupted the patient twice")
    expert.get_by_test_id("pin-communication").click()
    expect(expert.get_by_test_id("at-communication")).not_to_have_value("")
    expect(expert.get_by_test_id("autosave-status")).to_have_attribute("data-state", "saved", timeout=15_000)
    expert.get_by_test_id("submit").click()
    expect(expert.get_by_test_id("submitted-notice")).to_be_visible()
    expect(expert.get_by_test_id("critical-failures")).to_contain_text("0")


@pytest.mark.e2e
def test_an_expert_reviews_a_recorded_consultation_the_physician_acknowledges_the_report_shows_it(
        server_and_worker: str, database_url: str,  # noqa: F811  # the fixture
        three_browsers: tuple[BrowserContext, BrowserContext, BrowserContext],  # noqa: F811  # the fixture
        tmp_path: Path) -> None:
    base = server_and_worker
    consultation = _seeded(database_url, tmp_path)
    physician_context, patient_context, expert_context = three_browsers
    doctor, patient = physician_context.new_page(), patient_context.new_page()
    recorded_call(doctor, patient, base, consultation, database_url)
    state, _patient_id = _finalised(database_url, consultation)
    assert state == "complete"
    review_id = _sampled_and_assigned(database_url, tmp_path / "server-var")

    expert = expert_context.new_page()
    _sign_in(expert, base, EXPERT_EMAIL)
    _reviews_the_consultation(expert, base, review_id)
    status, score = _review_row(database_url, review_id)
    weights = {item["key"]: item["weight"] for item in DEFAULT_CHECKLIST["items"]}
    total = sum(weights.values())
    assert (status, score) == ("submitted", round(100 * (total - weights["communication"]) / total, 1))
    plays = _recording_plays(database_url)
    assert {participant for role, participant in plays if role == "qa_expert"} == {"physician", "patient"}

    # The physician reads it (no expert's name) and acknowledges it.
    doctor.goto(f"{base}/qa/my-reviews")
    doctor.locator(f'[data-testid="my-review-row"][data-review="{review_id}"]').get_by_test_id(
        "open-my-review").click()
    expect(doctor.locator("body")).to_contain_text("Interrupted the patient twice")
    expect(doctor.locator("body")).not_to_contain_text("Экспертова")
    doctor.get_by_test_id("acknowledge").click()
    expect(doctor.get_by_test_id("review-status")).to_have_attribute("data-status", "acknowledged")
    assert _review_row(database_url, review_id)[0] == "acknowledged"

    # The clinic's report: the physician's one consultation sampled (the floor met), one review done, its score.
    expert.goto(f"{base}/qa/reports")
    row = expert.locator('[data-testid="physician-row"]')
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("consultations")).to_have_text("1")
    expect(row.get_by_test_id("sampled")).to_have_text("1")
    expect(row.get_by_test_id("floor-met")).to_be_visible()
    expect(row.get_by_test_id("done")).to_have_text("1")
    assert float(row.get_by_test_id("mean-score").inner_text().replace(",", ".")) == score
