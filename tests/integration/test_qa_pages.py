"""The QA pages (issue 7): the expert's queue and review screen, the physician's reviews, the admin's overview.

Each page renders for its role with what it is for; another expert or physician gets the 404 page; the review
form saves and submits without scripts and shows each item's problem next to it; the physician acknowledges or
disputes; the admin reassigns; loading the review's materials is in the patient's access log."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from media.recording.models import Recording
from qa_audit import assignment, sampling, services
from qa_audit.models import Review, ReviewStatus
from qa_audit.rules import DEFAULT_CHECKLIST
from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_qa_secrets
from server.scheduling.models import Consultation, ConsultationStatus
from signaling.models import CallChatMessage, CallRole
from tests.factories import Account, create_staff
from tests.integration.test_pages import EN, RU, form_login, form_token
from tests.integration.test_protocol import NOTES
from tests.integration.test_qa_reviews import ZONE, _expert
from tests.integration.test_recording_api import recorded_clinic
from web.qa_pages.review import clock, parse_clock

ITEMS = [item["key"] for item in DEFAULT_CHECKLIST["items"]]


async def _complete(client: TestClient, clinic: dict[str, Any]) -> None:
    """The call took place (after the consents were signed), with a chat line; sampled, assigned; then the
    physician signs the protocol."""
    app = client.app
    now = utcnow()
    async with transaction(app[keys.sessions]) as session:
        consultation = await session.get_one(Consultation, uuid.UUID(clinic["consultation"]))
        consultation.status = ConsultationStatus.completed
        consultation.admitted_at, consultation.ended_at = now, now + dt.timedelta(minutes=15)
        recording = await session.get_one(Recording, uuid.UUID(clinic["recording"]))
        said_at = dt.datetime.fromtimestamp((recording.origin or recording.started_at.timestamp()) + 5, dt.UTC)
        session.add(CallChatMessage(consultation_id=consultation.id, sender_user_id=uuid.UUID(clinic["doctor"].user_id),
                                    sender_role=CallRole.physician, text="Пришлите фото горла", sent_at=said_at))
        await services.sample_pending(session, secrets=load_qa_secrets(app[keys.settings]),
                                      policy=sampling.SamplingPolicy(), zone=ZONE, now=now)
        await assignment.assign_pending(session, settings=app[keys.settings], now=now)
    doctor, url = clinic["doctor"], f"/api/v1/consultations/{clinic['consultation']}/protocol"
    saved = await client.put(f"{url}/draft", headers=doctor.auth, json=NOTES)
    assert saved.status == 200, await saved.text()
    prepared = await client.post(f"{url}/prepare", headers=doctor.auth, json={"language": "ru"})
    assert prepared.status == 201, await prepared.text()
    signed = await client.post(f"{url}/sign", headers=doctor.auth, json={"document_id": (await prepared.json())["id"]})
    assert signed.status == 201, await signed.text()


async def _review(client: TestClient) -> Review:
    async with client.app[keys.read_sessions]() as session:
        return (await session.scalars(select(Review).order_by(Review.round.desc()).limit(1))).one()


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A recorded consultation with a signed protocol and a chat, sampled and assigned to one of two experts."""
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    clinic["first"], clinic["second"] = await _expert(client), await _expert(client)
    await _complete(client, clinic)
    found = await _review(client)
    clinic["review"] = str(found.id)
    assigned = {clinic["first"][1]: clinic["first"], clinic["second"][1]: clinic["second"]}
    clinic["reviewer"] = assigned[found.expert_id][0]
    clinic["other"] = next(pair for key, pair in assigned.items() if key != found.expert_id)[0]
    return clinic


async def _sign_in(client: TestClient, account: Account) -> None:
    client.session.cookie_jar.clear()
    otp = pyotp.TOTP(account.totp_secret).now() if account.totp_secret else None
    assert (await form_login(client, account.email, otp=otp)).status == 303


async def _page(client: TestClient, path: str, headers: dict[str, str] = EN) -> tuple[int, str]:
    response = await client.get(path, headers=headers, allow_redirects=False)
    return response.status, await response.text()


async def _post(client: TestClient, path: str, data: dict[str, str], *, token_from: str) -> tuple[int, str, str]:
    token = form_token((await _page(client, token_from))[1])
    response = await client.post(path, data={"csrf_token": token, **data}, headers=EN, allow_redirects=False)
    return response.status, response.headers.get("Location", ""), await response.text()


async def _actions(client: TestClient, action: str) -> list[AuditEntry]:
    async with client.app[keys.read_sessions]() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                           .order_by(AuditEntry.seq))).all())


def _form(answers: dict[str, str], **extra: str) -> dict[str, str]:
    data = {f"answer-{key}": value for key, value in answers.items()}
    return {**data, **extra}


def _all_yes(**overrides: str) -> dict[str, str]:
    """Every item answered yes but those named; other names are the form's own fields."""
    answers = {key: overrides.pop(key, "yes") for key in ITEMS}
    return _form(answers, **overrides)


def test_moments_are_written_and_read_as_minutes_and_seconds() -> None:
    assert [clock(s) for s in (None, 0, 59.9, 192, 3600 + 62)] == ["", "0:00", "0:59", "3:12", "1:01:02"]
    assert [parse_clock(t) for t in ("", "3:12", "1:01:02", "12.5", " 0:07 ")] == [None, 192, 3662, 12.5, 7]
    for bad in ("soon", "3:xx", "nan", "inf"):
        with pytest.raises(ValueError):  # noqa: PT011  # float() and the clock share ValueError
            parse_clock(bad)


async def test_the_expert_sees_their_queue_and_the_review_screen_with_every_material(clinic: dict[str, Any]) -> None:
    client, review_id = clinic["client"], clinic["review"]
    await _sign_in(client, clinic["reviewer"])
    status, page = await _page(client, "/qa/queue")
    assert status == 200
    assert re.search(rf'data-testid="queue-row" data-review="{review_id}" data-status="assigned"', page)
    assert f'href="/qa/reviews/{review_id}"' in page
    assert "Пётр Ожидающий" not in page  # the queue names the physician and the date, never the patient

    status, page = await _page(client, f"/qa/reviews/{review_id}")
    assert status == 200, page
    sources = re.findall(r'<video data-testid="video-(\w+)"[^>]* src="([^"]+)"', page)
    assert [(who, html.unescape(src)) for who, src in sources] == [
        (who, f"/api/v1/recordings/{clinic['recording']}/media?participant={who}") for who in ("physician", "patient")]
    media = await client.get(html.unescape(sources[0][1]), headers={"Range": "bytes=0-3"})
    assert media.status == 206  # the page's session plays what it shows
    assert NOTES["complaints"] in html.unescape(page)  # the signed protocol
    assert 'data-testid="screening-answers"' in page
    assert 'data-may-record="true"' in page  # the consents held at the call, recording included
    assert "Пришлите фото горла" in page  # the chat, with a moment to seek to
    assert re.search(r'data-seek="(4\.9|5\.0|5)\d*">0:0[45]<', page)  # five seconds into the recording
    for key in ITEMS:
        for answer in ("yes", "no", "na"):
            assert f'data-testid="answer-{key}-{answer}"' in page
        assert f'data-testid="pin-{key}"' in page
    assert f'data-autosave="/api/v1/qa/reviews/{review_id}/draft"' in page
    assert "/static/qa.js" in page
    assert "Телеконсультация «врач — пациент»" in (await _page(client, f"/qa/reviews/{review_id}", RU))[1]

    [viewed, _] = await _actions(client, "qa.materials_viewed")
    assert (viewed.actor_role, viewed.object_id, str(viewed.subject_patient_id)) == (
        "qa_expert", clinic["consultation"], clinic["patient"].patient_id)
    assert viewed.detail is not None
    assert viewed.detail["recordings"] == [clinic["recording"]]


async def test_another_expert_a_physician_and_a_patient_get_the_404_page(clinic: dict[str, Any]) -> None:
    client, review_id = clinic["client"], clinic["review"]
    await _sign_in(client, clinic["other"])
    assert (await _page(client, f"/qa/reviews/{review_id}"))[0] == 404
    status, page = await _page(client, "/qa/queue")
    assert status == 200
    assert review_id not in page
    status, _, _ = await _post(client, f"/qa/reviews/{review_id}", _all_yes(action="submit"), token_from="/qa/queue")
    assert status == 404
    for account in (clinic["doctor"], clinic["patient"]):
        await _sign_in(client, account)
        for path in (f"/qa/reviews/{review_id}", "/qa/queue", "/qa/overview"):
            assert (await _page(client, path))[0] == 404, path
    assert await _actions(client, "qa.materials_viewed") == []
    assert (await _review(client)).status is ReviewStatus.assigned


async def test_the_form_saves_without_scripts_and_submit_shows_each_items_problem(clinic: dict[str, Any]) -> None:
    client, review_id = clinic["client"], clinic["review"]
    await _sign_in(client, clinic["reviewer"])
    path = f"/qa/reviews/{review_id}"
    status, location, _ = await _post(client, path, _form(
        {"consent": "no"}, **{"comment-consent": "Not re-read", "at-consent": "0:12", "note-0-at": "0:04",
                              "note-0-text": "Asks about chest pain", "revision": "0", "action": "save"}),
        token_from=path)
    assert (status, location) == (303, f"{path}?saved=1")
    saved = await _review(client)
    assert (saved.status, saved.revision) == (ReviewStatus.in_review, 1)
    assert saved.answers["consent"] == {"answer": "no", "comment": "Not re-read", "at": 12}
    assert saved.notes == [{"at": 4, "text": "Asks about chest pain"}]
    page = (await _page(client, path))[1]
    assert 'value="0:12"' in page
    assert 'value="Asks about chest pain"' in page

    # Submitting with items unanswered and a "no" without its comment: every problem next to its item.
    status, _, page = await _post(client, path, _form({"consent": "no", "history": "yes"},
                                                      revision="1", action="submit"), token_from=path)
    assert status == 422
    assert 'data-testid="error-comment-consent"' in page
    assert 'data-testid="error-answer-referral"' in page
    assert 'data-testid="error-answer-history"' not in page
    assert (await _review(client)).status is ReviewStatus.in_review

    status, _, page = await _post(client, path, _all_yes(**{"at-history": "soon", "revision": "2"}), token_from=path)
    assert status == 422
    assert 'data-testid="error-at-history"' in page
    assert 'value="soon"' in page

    stale, _, page = await _post(client, path, _all_yes(revision="0", action="save"), token_from=path)
    assert stale == 412
    assert 'data-testid="review-message"' in page

    status, location, _ = await _post(client, path, _all_yes(
        consent="no", technical="na", **{"comment-consent": "Not re-read", "revision": "2", "action": "submit"}),
        token_from=path)
    assert (status, location) == (303, f"{path}?submitted=1")
    done = await _review(client)
    assert (done.status, done.critical_failures, done.failed_items) == (ReviewStatus.submitted, 1, ["consent"])
    page = (await _page(client, path))[1]
    assert 'data-testid="review-result"' in page
    assert 'data-testid="critical-failures">1<' in page
    assert 'data-testid="submit"' not in page
    assert "data-autosave=" not in page
    queue_page = (await _page(client, "/qa/queue"))[1]
    assert re.search(rf'data-testid="done-row" data-review="{review_id}" data-status="submitted"', queue_page)


async def test_the_physician_reads_their_review_and_acknowledges_it(clinic: dict[str, Any]) -> None:
    client, review_id = clinic["client"], clinic["review"]
    await _sign_in(client, clinic["reviewer"])
    path = f"/qa/reviews/{review_id}"
    await _post(client, path, _all_yes(history="no", **{"comment-history": "Brief history", "at-history": "1:05",
                                                        "note-0-at": "0:03", "note-0-text": "Good greeting",
                                                        "revision": "0", "action": "submit"}), token_from=path)

    await _sign_in(client, clinic["doctor"])
    status, page = await _page(client, "/qa/my-reviews")
    assert status == 200
    assert re.search(rf'data-testid="my-review-row" data-review="{review_id}" data-status="submitted"', page)
    status, page = await _page(client, f"/qa/my-reviews/{review_id}")
    assert status == 200
    assert "Brief history" in page
    assert re.search(r'data-testid="failed-at">[^<]*1:05<', page)
    assert "Good greeting" in page
    assert "Staff qa_expert" not in page  # who audited is the clinic's
    assert [e.actor_role for e in await _actions(client, "qa.review_opened")] == ["physician"]
    assert (await _page(client, f"/qa/reviews/{review_id}"))[0] == 404  # the expert's screen is not theirs

    status, location, _ = await _post(client, f"/qa/my-reviews/{review_id}/acknowledge", {},
                                      token_from=f"/qa/my-reviews/{review_id}")
    assert (status, location) == (303, f"/qa/my-reviews/{review_id}?done=acknowledge")
    assert (await _review(client)).status is ReviewStatus.acknowledged
    page = (await _page(client, f"/qa/my-reviews/{review_id}"))[1]
    assert 'data-testid="answer-forms"' not in page

    other = await create_staff(client, Role.physician)
    await _sign_in(client, other)
    assert (await _page(client, f"/qa/my-reviews/{review_id}"))[0] == 404
    assert review_id not in (await _page(client, "/qa/my-reviews"))[1]


async def test_a_draft_is_not_the_physicians_and_a_dispute_needs_their_reasons(clinic: dict[str, Any]) -> None:
    client, review_id = clinic["client"], clinic["review"]
    await _sign_in(client, clinic["doctor"])
    assert (await _page(client, f"/qa/my-reviews/{review_id}"))[0] == 404  # not submitted yet

    await _sign_in(client, clinic["reviewer"])
    path = f"/qa/reviews/{review_id}"
    await _post(client, path, _all_yes(revision="0", action="submit"), token_from=path)
    await _sign_in(client, clinic["doctor"])
    mine = f"/qa/my-reviews/{review_id}"
    status, _, page = await _post(client, f"{mine}/dispute", {"response": "  "}, token_from=mine)
    assert status == 422
    assert 'data-testid="answer-error"' in page
    assert (await _review(client)).status is ReviewStatus.submitted
    status, location, _ = await _post(client, f"{mine}/dispute", {"response": "The history was complete"},
                                      token_from=mine)
    assert (status, location) == (303, f"{mine}?done=dispute")
    second = await _review(client)
    assert second.round == 2
    assert str(second.expert_id) != str((await _first(client)).expert_id)
    page = (await _page(client, mine))[1]
    assert "The history was complete" in page
    assert 'data-status="disputed"' in page


async def _first(client: TestClient) -> Review:
    async with client.app[keys.read_sessions]() as session:
        return (await session.scalars(select(Review).where(Review.round == 1))).one()


async def test_the_admin_sees_workloads_reads_the_review_and_reassigns_it(clinic: dict[str, Any]) -> None:
    client, review_id = clinic["client"], clinic["review"]
    boss = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    await _sign_in(client, boss)
    status, page = await _page(client, "/qa/overview")
    assert status == 200
    before = await _review(client)
    assert re.search(rf'data-testid="workload-row" data-expert="{before.expert_id}" data-open="1"', page)
    assert 'data-testid="unassigned-none"' in page
    assert re.search(rf'data-testid="open-review-row" data-review="{review_id}"', page)

    status, page = await _page(client, f"/qa/reviews/{review_id}")
    assert status == 200
    assert "<video" not in page
    assert 'data-testid="open-player"' in page
    assert "data-autosave=" not in page
    assert 'data-testid="submit"' not in page

    other_id = next(expert for expert in (clinic["first"][1], clinic["second"][1]) if expert != before.expert_id)
    status, location, _ = await _post(client, f"/qa/overview/reviews/{review_id}/reassign",
                                      {"expert_id": str(other_id)}, token_from="/qa/overview")
    assert (status, location) == (303, f"/qa/overview?reassigned={review_id}")
    assert (await _review(client)).expert_id == other_id
    status, _, page = await _post(client, f"/qa/overview/reviews/{review_id}/reassign",
                                  {"expert_id": str(uuid.uuid4())}, token_from="/qa/overview")
    assert status == 409
    assert 'data-testid="reassign-error"' in page
    status, location, _ = await _post(client, f"/qa/overview/reviews/{review_id}/reassign", {"expert_id": ""},
                                      token_from="/qa/overview")
    assert status == 303
    assert (await _review(client)).expert_id == before.expert_id  # the least loaded other one
    assert len(await _actions(client, "qa.review_reassigned")) == 2

    await _sign_in(client, clinic["reviewer"])
    assert (await _page(client, "/qa/overview"))[0] == 404


async def test_the_review_screen_says_why_it_was_sampled_and_what_the_patient_complained_of(
        clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    given = await client.post(f"/api/v1/consultations/{clinic['consultation']}/feedback",
                              headers=clinic["patient"].auth,
                              json={"rating": 1, "complaint": "Врач не выслушал меня"})
    assert given.status == 201, await given.text()
    await _sign_in(client, clinic["reviewer"])
    status, page = await _page(client, f"/qa/reviews/{clinic['review']}")
    assert status == 200
    reasons = re.findall(r'<li data-reason="(\w+)">', page)
    assert "new_physician" in reasons  # the physician's first consultation here
    assert {"complaint", "low_rating"} <= set(reasons)  # added late, when the patient wrote
    assert "Одна из первых консультаций врача" in page  # named, in the expert's language
    assert re.search(r'data-testid="patient-rating">1<', page)
    assert "Врач не выслушал меня" in page
    [viewed] = await _actions(client, "qa.materials_viewed")
    assert viewed.detail is not None
    assert viewed.detail["feedback"] is True
    assert "Врач не выслушал" not in str(viewed.detail)  # the text is never in the audit log
