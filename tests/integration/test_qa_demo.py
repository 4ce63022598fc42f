"""The demo clinic's promise (issue 7): after a few consultations, the QA experts have work in their queues and
the clinic's report shows each physician's sampled share, through the same Celery task bodies the beat runs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from qa_audit import review_tasks
from qa_audit import tasks as sampling_tasks
from server import demo, keys
from server.app import create_app
from server.db.engine import transaction
from server.db.runner import run_in_session
from server.people.models import Physician
from server.scheduling.catalogue import load_questionnaires
from tests.conftest import make_settings
from tests.consent_helpers import sign_consents
from tests.factories import Account, login
from tests.integration.test_protocol import _through_call
from tests.integration.test_staff_pages import page, sign_in
from tests.scheduling_helpers import benign_answers, booking, free_slot


async def test_after_a_few_demo_consultations_the_experts_have_work_and_the_report_shows_the_shares(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, checkin_opens_minutes=60, join_opens_minutes=60)
    client = await aiohttp_client(create_app(settings))
    app = client.app
    async with transaction(app[keys.sessions]) as session:
        seeded = await demo.seed(session, settings, passwords=app[keys.passwords])
    assert seeded is not None
    accounts = {a.email: Account(a.email, a.password, "", a.role, totp_secret=a.totp_secret) for a in seeded}
    doctor = await login(client, accounts[demo.DUTY_EMAIL])
    me = await (await client.get("/api/v1/me", headers=doctor.auth)).json()
    duty_id = me["physician"]["id"]
    by_code = load_questionnaires()  # what the demo seeded

    for index, email in enumerate(("patient1@demo.clinic", "patient2@demo.clinic")):
        patient = await login(client, accounts[email])
        mine = await (await client.get("/api/v1/me", headers=patient.auth)).json()
        patient.user_id, patient.patient_id = mine["user"]["id"], mine["patient"]["id"]
        await sign_consents(client, patient)
        starts_at = await free_slot(client, patient, duty_id, index)
        made = await client.post("/api/v1/consultations", headers=patient.auth,
                                 json=booking(duty_id, starts_at, benign_answers(by_code["respiratory"])))
        assert made.status == 201, await made.text()
        await _through_call(client, (await made.json())["id"], patient, doctor, by_code["checkin"])

    # What the beat runs every two minutes.
    assert await _in_thread(run_in_session, sampling_tasks._sample, settings) == 2
    assert await _in_thread(run_in_session, review_tasks._assign, settings) == 2

    queued = 0
    for email in ("qa@demo.clinic", "qa2@demo.clinic"):
        await sign_in(client, accounts[email])
        html = await page(client, "/qa/queue")
        queued += len(re.findall(r'data-testid="queue-row"', html))
    assert queued == 2

    await sign_in(client, accounts["admin@demo.clinic"])
    report = await page(client, "/qa/reports")
    async with app[keys.read_sessions]() as session:
        physicians = (await session.scalars(select(Physician.id))).all()
    rows = re.findall(r'<tr data-testid="physician-row" data-physician="([^"]+)"', report)
    assert set(rows) == {str(physician) for physician in physicians}  # every physician, with or without consultations
    duty_row = report[report.index(f'data-physician="{duty_id}"'):]
    assert re.search(r'data-testid="share">100\s*%<', duty_row)


async def _in_thread(runner: Any, work: Any, settings: Any) -> Any:
    """The task runner makes its own event loop, as in a Celery worker; here in a thread beside the test's."""
    return await asyncio.to_thread(runner, work, settings)
