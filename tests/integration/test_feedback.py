"""Patients' feedback on their consultations (issue 7): given once, by the patient, after the consultation; a
complaint or a low rating puts the consultation in the QA sample, also when its decision was already made."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from qa_audit import feedback as service
from qa_audit import sampling, services
from qa_audit.feedback_models import ConsultationFeedback
from qa_audit.feedback_schemas import FeedbackIn
from qa_audit.models import SamplingDecision
from server import keys
from server.app import create_app
from server.audit.models import AuditEntry
from server.audit.services import AuditContext
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_qa_secret
from server.scheduling.models import Consultation
from server.scheduling.services import Viewer
from tests.conftest import make_settings
from tests.consent_helpers import sign_consents
from tests.factories import Account, create_staff, register_patient
from tests.integration.test_pages import EN, RU, form_login, form_token
from tests.integration.test_protocol import _through_call
from tests.scheduling_helpers import benign_answers, booking, free_slot, physician_on_duty, seed_catalogue

ZONE = ZoneInfo("Europe/Moscow")
#: A policy under which the draw passes everything over and no other rule fires: the consultation stays unsampled.
NEVER = sampling.SamplingPolicy(rate=Fraction(1, 10**18), first_consultations=0, min_call_seconds=0)
COMPLAINT = "Врач не выслушал меня и отключился через две минуты"


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A patient booked into the next slot (check-in open), with consents signed, as `booked_clinic` makes one."""
    settings = make_settings(tmp_path, database_url, checkin_opens_minutes=60, join_opens_minutes=60)
    client: TestClient = await aiohttp_client(create_app(settings))
    catalogue = await seed_catalogue(client)
    doctor, physician_id = await physician_on_duty(client)
    patient = await register_patient(client, full_name="Пётр Отзывчивый")
    await sign_consents(client, patient)
    starts_at = await free_slot(client, patient, physician_id)
    made = await client.post("/api/v1/consultations", headers=patient.auth,
                             json=booking(physician_id, starts_at, benign_answers(catalogue["respiratory"])))
    assert made.status == 201, await made.text()
    return {"client": client, "catalogue": catalogue, "doctor": doctor, "patient": patient,
            "consultation": str((await made.json())["id"])}


async def completed(clinic: dict[str, Any]) -> tuple[TestClient, Account, str]:
    """Check-in, admission and the end of the call, through the real endpoints."""
    client, consultation = clinic["client"], clinic["consultation"]
    await _through_call(client, consultation, clinic["patient"], clinic["doctor"], clinic["catalogue"]["checkin"])
    return client, clinic["patient"], consultation


def url(consultation_id: str) -> str:
    return f"/api/v1/consultations/{consultation_id}/feedback"


async def decide(client: TestClient, consultation_id: str, policy: sampling.SamplingPolicy) -> SamplingDecision:
    app = client.app
    async with transaction(app[keys.sessions]) as session:
        consultation = await session.get(Consultation, uuid.UUID(consultation_id))
        assert consultation is not None
        return await services.decide_once(session, consultation, secret=load_qa_secret(app[keys.settings]),
                                          policy=policy, zone=ZONE, now=utcnow())


async def decision_of(client: TestClient, consultation_id: str) -> SamplingDecision | None:
    async with client.app[keys.read_sessions]() as session:
        return (await session.scalars(select(SamplingDecision).where(
            SamplingDecision.consultation_id == uuid.UUID(consultation_id)))).one_or_none()


async def audit_entries(client: TestClient, action: str) -> list[AuditEntry]:
    async with client.app[keys.read_sessions]() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def stored(client: TestClient) -> list[ConsultationFeedback]:
    async with client.app[keys.read_sessions]() as session:
        return list((await session.scalars(select(ConsultationFeedback))).all())


# --- the API ------------------------------------------------------------------------------------------------------


async def test_feedback_is_accepted_once_and_read_back(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    missing = await client.get(url(consultation), headers=patient.auth)
    assert missing.status == 404
    assert (await missing.json())["code"] == "feedback_not_found"

    with structlog.testing.capture_logs() as logs:
        given = await client.post(url(consultation), headers=patient.auth,
                                  json={"rating": 3, "complaint": f"  {COMPLAINT}  "})
    assert given.status == 201, await given.text()
    body = await given.json()
    assert (body["consultation_id"], body["rating"], body["complaint"]) == (consultation, 3, COMPLAINT)

    read = await client.get(url(consultation), headers=patient.auth)
    assert read.status == 200
    assert await read.json() == body

    again = await client.post(url(consultation), headers=patient.auth, json={"rating": 5})
    assert again.status == 409
    assert (await again.json())["code"] == "feedback_already_given"
    [row] = await stored(client)
    assert (row.rating, row.complaint, str(row.patient_id)) == (3, COMPLAINT, patient.patient_id)

    # Audited, without the complaint's text (PHI): the rating and that a complaint was made.
    [entry] = await audit_entries(client, "consultation.feedback_given")
    assert (entry.object_id, str(entry.subject_patient_id)) == (consultation, patient.patient_id)
    assert entry.detail == {"rating": 3, "complaint": True}
    assert COMPLAINT not in json.dumps(logs, ensure_ascii=False, default=str)


async def test_two_sends_at_once_keep_exactly_one(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    answers = await asyncio.gather(*(client.post(url(consultation), headers=patient.auth, json={"rating": rating})
                                     for rating in (4, 5)))
    assert sorted(answer.status for answer in answers) == [201, 409]
    assert len(await stored(client)) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({}, "rating"),
    ({"rating": 0}, "rating"),
    ({"rating": 6}, "rating"),
    ({"rating": "5"}, "rating"),
    ({"rating": True}, "rating"),
    ({"rating": 4.5}, "rating"),
    ({"rating": 2, "complaint": "x" * 2001}, "complaint"),
    ({"rating": 2, "complaint": "bad\x00text"}, "complaint"),
    ({"rating": 2, "stars": 5}, "stars"),
])
async def test_invalid_feedback_is_a_problem_naming_the_field(clinic: dict[str, Any], body: dict[str, Any],
                                                              field: str) -> None:
    client, patient, consultation = await completed(clinic)
    answer = await client.post(url(consultation), headers=patient.auth, json=body)
    assert answer.status == 422
    assert answer.content_type == "application/problem+json"
    problem = await answer.json()
    assert field in [error["field"] for error in problem["errors"]]
    assert await stored(client) == []


async def test_a_blank_complaint_is_no_complaint(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    answer = await client.post(url(consultation), headers=patient.auth, json={"rating": 5, "complaint": "  \n "})
    assert answer.status == 201
    assert (await answer.json())["complaint"] is None
    [entry] = await audit_entries(client, "consultation.feedback_given")
    assert entry.detail == {"rating": 5, "complaint": False}
    assert FeedbackIn.model_validate({"rating": 5, "complaint": "я" * 2000}).complaint == "я" * 2000  # the limit


async def test_another_patients_consultation_is_not_found(clinic: dict[str, Any]) -> None:
    client, _patient, consultation = await completed(clinic)
    stranger = await register_patient(client)
    for answer in (await client.post(url(consultation), headers=stranger.auth, json={"rating": 1}),
                   await client.get(url(consultation), headers=stranger.auth),
                   await client.post(url(str(uuid.uuid4())), headers=stranger.auth, json={"rating": 1}),
                   await client.get("/api/v1/consultations/not-an-id/feedback", headers=stranger.auth)):
        assert answer.status == 404
        assert (await answer.json())["code"] == "not_found"
    physician = await client.post(url(consultation), headers=clinic["doctor"].auth, json={"rating": 5})
    assert physician.status == 403  # patients' feedback only: staff cannot rate on a patient's behalf
    expert = await create_staff(client, Role.qa_expert)
    assert (await client.get(url(consultation), headers=expert.auth)).status == 403
    assert await stored(client) == []


async def test_feedback_before_the_consultation_took_place_is_a_conflict(clinic: dict[str, Any]) -> None:
    client, patient, consultation = clinic["client"], clinic["patient"], clinic["consultation"]
    answer = await client.post(url(consultation), headers=patient.auth, json={"rating": 1, "complaint": COMPLAINT})
    assert answer.status == 409
    assert (await answer.json())["code"] == "consultation_not_finished"
    await _through_call(client, consultation, patient, clinic["doctor"], clinic["catalogue"]["checkin"],
                        finish=False)
    in_call = await client.post(url(consultation), headers=patient.auth, json={"rating": 1})
    assert in_call.status == 409  # still in the call
    assert await stored(client) == []


# --- feeding the sampling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "reasons"), [
    ({"rating": 2}, ["low_rating"]),
    ({"rating": 1}, ["low_rating"]),
    ({"rating": 5, "complaint": COMPLAINT}, ["complaint"]),
    ({"rating": 1, "complaint": COMPLAINT}, ["complaint", "low_rating"]),
])
async def test_a_complaint_or_low_rating_after_an_unsampled_decision_samples_it(
        clinic: dict[str, Any], body: dict[str, Any], reasons: list[str]) -> None:
    client, patient, consultation = await completed(clinic)
    before = await decide(client, consultation, NEVER)
    assert not before.sampled
    assert before.reasons == []

    assert (await client.post(url(consultation), headers=patient.auth, json=body)).status == 201
    after = await decision_of(client, consultation)
    assert after is not None
    assert after.sampled
    assert after.reasons == reasons
    assert (after.draw_value, after.decided_at) == (before.draw_value, before.decided_at)  # the same decision
    [late] = await audit_entries(client, "qa.sampling_targeted_late")
    assert late.object_id == consultation
    assert late.detail == {"reasons": reasons, "was_sampled": False}


@pytest.mark.parametrize("rating", [3, 4, 5])
async def test_a_good_rating_without_complaint_changes_nothing(clinic: dict[str, Any], rating: int) -> None:
    client, patient, consultation = await completed(clinic)
    await decide(client, consultation, NEVER)
    assert (await client.post(url(consultation), headers=patient.auth, json={"rating": rating})).status == 201
    after = await decision_of(client, consultation)
    assert after is not None
    assert (after.sampled, after.reasons) == (False, [])
    assert await audit_entries(client, "qa.sampling_targeted_late") == []


async def test_the_clinics_threshold_decides_what_is_low(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    await decide(client, consultation, NEVER)
    settings = client.app[keys.settings].model_copy(update={"qa_low_rating": 3})
    assert patient.patient_id is not None
    viewer = Viewer(uuid.UUID(patient.user_id), Role.patient, uuid.UUID(patient.patient_id))
    async with transaction(client.app[keys.sessions]) as session:
        await service.give_feedback(session, consultation_id=uuid.UUID(consultation), viewer=viewer, rating=3,
                                    complaint=None, ctx=AuditContext(actor_role="test"),
                                    policy=services.policy_from(settings), now=utcnow())
    after = await decision_of(client, consultation)
    assert after is not None
    assert (after.sampled, after.reasons) == (True, ["low_rating"])


async def test_feedback_adds_its_reason_to_a_decision_already_sampled(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    before = await decide(client, consultation, sampling.SamplingPolicy())
    assert before.sampled  # the physician's first consultation here
    assert "complaint" not in before.reasons
    assert (await client.post(url(consultation), headers=patient.auth,
                              json={"rating": 4, "complaint": COMPLAINT})).status == 201
    after = await decision_of(client, consultation)
    assert after is not None
    assert after.sampled
    assert after.reasons == [*before.reasons, "complaint"]
    [late] = await audit_entries(client, "qa.sampling_targeted_late")
    assert late.detail == {"reasons": ["complaint"], "was_sampled": True}


async def test_feedback_before_the_decision_is_read_by_the_facts_and_the_sweep(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    async with client.app[keys.read_sessions]() as session:
        assert await service.feedback_facts(session, uuid.UUID(consultation)) == (False, None)
    assert (await client.post(url(consultation), headers=patient.auth,
                              json={"rating": 2, "complaint": COMPLAINT})).status == 201
    assert await decision_of(client, consultation) is None  # feedback does not make the decision itself
    [row] = await stored(client)
    async with client.app[keys.read_sessions]() as session:
        assert await service.feedback_facts(session, uuid.UUID(consultation)) == (True, 2)
        # As a decision made before it saw the record (what a replay recomputes): no feedback yet.
        earlier = row.created_at - dt.timedelta(seconds=1)
        assert await service.feedback_facts(session, uuid.UUID(consultation), as_of=earlier) == (False, None)
        assert await service.feedback_facts(session, uuid.UUID(consultation), as_of=row.created_at) == (True, 2)

    await decide(client, consultation, NEVER)
    policy = services.policy_from(client.app[keys.settings])
    async with transaction(client.app[keys.sessions]) as session:  # the sweep's reconciliation
        await service.apply_pending_feedback(session, policy=policy, now=utcnow())
    after = await decision_of(client, consultation)
    assert after is not None
    assert after.sampled
    assert {"complaint", "low_rating"} <= set(after.reasons)
    async with transaction(client.app[keys.sessions]) as session:  # idempotent
        assert await service.apply_pending_feedback(session, policy=policy, now=utcnow()) == 0
    again = await decision_of(client, consultation)
    assert again is not None
    assert again.reasons == after.reasons


# --- the patient's page --------------------------------------------------------------------------------------------


async def browser(client: TestClient, patient: Account) -> None:
    assert (await form_login(client, patient.email)).status == 303


async def test_the_feedback_page_renders_and_posts(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    await browser(client, patient)
    here = f"/my/consultations/{consultation}/feedback"
    page = await client.get(here, headers=EN)
    assert page.status == 200
    text = await page.text()
    assert 'data-testid="feedback-form"' in text
    assert all(f'data-testid="rating-{value}"' in text for value in range(1, 6))
    assert "I want to make a complaint" in text

    sent = await client.post(here, headers=EN, allow_redirects=False, data={
        "csrf_token": form_token(text), "rating": "2", "wants_complaint": "yes", "complaint": COMPLAINT})
    assert sent.status == 303
    assert sent.headers["Location"] == f"{here}?sent=1"
    [row] = await stored(client)
    assert (row.rating, row.complaint) == (2, COMPLAINT)
    decision = await decision_of(client, consultation)
    assert decision is None  # not decided yet: the decision will read the feedback

    thanks = await (await client.get(f"{here}?sent=1", headers=EN)).text()
    assert "Thank you!" in thanks
    assert 'data-testid="feedback-form"' not in thanks
    assert "2 / 5" in thanks
    assert html.escape(COMPLAINT) in thanks

    # A second send (another tab) changes nothing and shows what was sent.
    again = await client.post(here, headers=EN, allow_redirects=False,
                              data={"csrf_token": form_token(text), "rating": "5"})
    assert again.status == 303
    assert again.headers["Location"] == here
    assert [(r.rating, r.complaint) for r in await stored(client)] == [(2, COMPLAINT)]
    shown = await (await client.get(here, headers=EN)).text()
    assert "You have already sent your feedback" in shown


async def test_the_feedback_page_speaks_russian_and_shows_problems_at_the_fields(clinic: dict[str, Any]) -> None:
    client, patient, consultation = await completed(clinic)
    await browser(client, patient)
    here = f"/my/consultations/{consultation}/feedback"
    client.session.cookie_jar.update_cookies({"telemed_lang": "ru"})
    text = await (await client.get(here, headers=RU)).text()
    assert "Как прошла консультация?" in text
    assert "Хочу подать жалобу" in text
    refused = await client.post(here, headers=RU, data={"csrf_token": form_token(text), "wants_complaint": "yes"})
    assert refused.status == 422
    shown = await refused.text()
    assert 'data-testid="error-rating"' in shown
    assert 'data-testid="error-complaint"' in shown
    assert "Пожалуйста, выберите оценку консультации." in shown
    too_long = await client.post(here, headers=RU, data={"csrf_token": form_token(text), "rating": "4",
                                                         "complaint": "я" * 2001})
    assert too_long.status == 422
    assert 'data-testid="error-complaint"' in await too_long.text()
    assert await stored(client) == []

    # Text typed without ticking the box is still a complaint: it is what the patient wants the clinic to read.
    sent = await client.post(here, headers=RU, allow_redirects=False,
                             data={"csrf_token": form_token(text), "rating": "5", "complaint": COMPLAINT})
    assert sent.status == 303
    [row] = await stored(client)
    assert (row.rating, row.complaint) == (5, COMPLAINT)


async def test_the_feedback_page_waits_for_the_consultation_and_hides_others(clinic: dict[str, Any]) -> None:
    client, patient, consultation = clinic["client"], clinic["patient"], clinic["consultation"]
    await browser(client, patient)
    here = f"/my/consultations/{consultation}/feedback"
    text = await (await client.get(here, headers=EN)).text()
    assert 'data-testid="feedback-not-yet"' in text
    assert 'data-testid="feedback-form"' not in text
    refused = await client.post(here, headers=EN, data={"csrf_token": form_token(text), "rating": "1"})
    assert refused.status == 409
    assert 'data-testid="feedback-not-yet"' in await refused.text()
    assert await stored(client) == []

    stranger = await register_patient(client)
    await browser(client, stranger)
    hidden = await client.get(here, headers=EN)
    assert hidden.status == 404
    assert (await client.get("/my/consultations/not-an-id/feedback", headers=EN)).status == 404
    await _through_call(client, consultation, patient, clinic["doctor"], clinic["catalogue"]["checkin"])
    foreign = await client.post(here, headers=EN, data={"csrf_token": form_token(await hidden.text()), "rating": "1"})
    assert foreign.status == 404  # another patient's finished consultation: the same 404 page, nothing stored
    assert await stored(client) == []
