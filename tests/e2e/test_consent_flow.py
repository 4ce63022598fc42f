"""Consent before the visit, in a real browser with real e-mail: a patient on a phone opens the waiting room, is told
what to sign, reads each document, gets the code from a real SMTP server, signs, keeps the signed PDF (its SHA-256
is the one the page showed), and can then check in."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from consent import templates
from server.audit.services import AuditContext
from server.db.base import utcnow
from server.db.engine import create_engine, create_sessionmaker, transaction
from server.scheduling import availability, services
from server.scheduling.catalogue import load_questionnaires
from server.scheduling.models import ConsultationKind
from tests.e2e.seeding import seed_clinic
from tests.factories import PASSWORD
from tests.scheduling_helpers import benign_answers
from tests.services import wait_until
from tests.smtp import Sink

PATIENT_EMAIL = "galina@example.org"
PURPOSES = 3  # care by teleconsultation, personal data, recording: what the clinic asks by default


async def _clinic(database_url: str) -> str:
    """The catalogue and consent texts, a physician working round the clock, and a patient booked into the next
    slot (the waiting room opens an hour ahead, so check-in is open); returns the consultation's id."""
    engine = create_engine(database_url, null_pool=True)
    ctx, now = AuditContext(actor_role="test"), utcnow()
    questionnaires = load_questionnaires()
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            await templates.seed_defaults(session, ctx=ctx, now=now)
            seeded = await seed_clinic(session, patient_email=PATIENT_EMAIL, patient_name="Галина Петровна Смирнова",
                                       birth_date=dt.date(1946, 3, 8), phone="+79160002233", ctx=ctx, now=now)
            physician, user, patient = seeded.physician, seeded.user, seeded.patient
            (slot,) = await availability.free_slots(session, now=now, weeks=4, physician_id=physician.id, limit=1)
            booked = await services.book(session, patient_id=patient.id, physician_id=physician.id,
                                         starts_at=slot.starts_at, condition_code="arvi",
                                         kind=ConsultationKind.primary,
                                         answers=benign_answers(questionnaires["respiratory"]),
                                         complaint="Кашель третий день", now=now,
                                         ctx=AuditContext(actor_user_id=user.id, actor_role="patient"),
                                         windows=services.Windows(checkin_opens=dt.timedelta(minutes=60)))
            assert not isinstance(booked, services.ScreeningRefusal)
            return str(booked.id)
    finally:
        await engine.dispose()


def _code_from(sink: Sink, count: int) -> str:
    """The code in the `count`-th message the SMTP server received (waiting for it to arrive)."""
    assert wait_until(lambda: len(sink.envelopes) >= count, timeout=15), "no e-mail arrived"
    envelope = sink.envelopes[count - 1]
    assert envelope.rcpt_tos == [PATIENT_EMAIL]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(r"\b(\d{6})\b", body.get_content())
    assert found, body.get_content()
    return found.group(1)


def _answer_checkin(page: Page) -> None:
    for question_id, value in benign_answers(load_questionnaires()["checkin"]).items():
        name = f"answers.{question_id}"
        if isinstance(value, bool):
            page.locator(f'input[name="{name}"][value="{"yes" if value else "no"}"]').check()
        elif isinstance(value, str):
            page.locator(f'input[name="{name}"][value="{value}"]').check()
        else:
            page.locator(f'input[name="{name}"]').fill(f"{value:g}".replace(".", ","))


@pytest.mark.e2e
def test_patient_signs_every_consent_with_an_emailed_code_then_checks_in(
        live_server_with_mail: str, database_url: str, mail_sink: tuple[Sink, int], phone_browser: BrowserContext,
        tmp_path: Path) -> None:
    base, (sink, _) = live_server_with_mail, mail_sink
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps a loop running in this thread
        consultation_id = pool.submit(lambda: asyncio.run(_clinic(database_url))).result()
    waiting_room = f"{base}/my/consultations/{consultation_id}/waiting-room"

    page = phone_browser.new_page()
    page.goto(f"{base}/login?next=/my/consultations/{consultation_id}/waiting-room")
    page.get_by_label("Эл. почта").fill(PATIENT_EMAIL)
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(waiting_room)

    # Before any question, the waiting room says what to sign.
    expect(page.get_by_test_id("consents-needed")).to_be_visible()
    expect(page.get_by_test_id("checkin-form")).to_have_count(0)
    links = page.get_by_test_id("consents-needed").locator("a.pick")
    expect(links).to_have_count(PURPOSES)

    for signed in range(1, PURPOSES + 1):
        links.first.click()
        expect(page.get_by_test_id("document")).to_be_visible()  # the whole text, to read on the phone
        shown = page.get_by_test_id("document-sha256").inner_text().strip()
        page.get_by_test_id("send-code").click()
        expect(page.get_by_test_id("code-sent")).to_contain_text("g***@example.org")
        page.get_by_label("Код из сообщения").fill(_code_from(sink, signed))
        page.get_by_test_id("sign-submit").click()
        expect(page.get_by_test_id("signed")).to_be_visible()
        assert page.get_by_test_id("document-sha256").inner_text().strip() == shown
        with page.expect_download() as download:
            page.get_by_test_id("signed-pdf").click()
        saved = tmp_path / f"signed-{signed}.pdf"
        download.value.save_as(saved)
        data = saved.read_bytes()
        assert data.startswith(b"%PDF-")
        assert hashlib.sha256(data).hexdigest() == shown
        page.get_by_test_id("continue").click()
        page.wait_for_url(waiting_room)
        expect(links).to_have_count(PURPOSES - signed)

    # Everything is signed: the device check and the questions, then the waiting state.
    expect(page.get_by_test_id("consents-needed")).to_have_count(0)
    expect(page.get_by_test_id("checkin-form")).to_be_visible()
    _answer_checkin(page)
    page.get_by_test_id("checkin-submit").click()
    expect(page.get_by_test_id("waiting")).to_be_visible()
    assert len(sink.envelopes) == PURPOSES  # one code per document, nothing else
