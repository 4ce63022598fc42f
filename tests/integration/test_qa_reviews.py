"""QA reviews over the API: assignment keeps experts off their own practice and balances load, an expert sees only
what is assigned to them and replays its recording (audited), the checklist autosaves and submits with a score,
the physician acknowledges or disputes, a dispute goes to a second expert, admins reassign, overdue reviews are
reminded (issue 7)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from email import message_from_bytes
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from qa_audit import assignment, checklists, reminders, reviews, sampling, services
from qa_audit.models import Review, ReviewStatus
from qa_audit.problems import WrongStep
from qa_audit.rules import DEFAULT_CHECKLIST
from server import keys
from server.audit import services as audit
from server.audit.models import AuditEntry
from server.auth.models import Role, User
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_qa_secrets
from server.notify import OutboxSender
from server.people.models import QaExpert
from server.scheduling.models import Consultation, ConsultationStatus
from tests.factories import Account, admin, create_staff
from tests.integration.test_recording_api import recorded_clinic

ZONE = ZoneInfo("Europe/Moscow")
ITEMS = [item["key"] for item in DEFAULT_CHECKLIST["items"]]


async def _expert(client: Any, *, practises_as: str | None = None) -> tuple[Account, uuid.UUID]:
    account = await create_staff(client, Role.qa_expert)
    async with transaction(client.app[keys.sessions]) as session:
        expert = (await session.scalars(select(QaExpert).where(
            QaExpert.user_id == uuid.UUID(account.user_id)))).one()
        expert.physician_id = uuid.UUID(practises_as) if practises_as else None
        return account, expert.id


async def _complete_and_sample(app: Any, consultation_id: str) -> None:
    """The consultation ends, its sampling decision is made (a physician's first is always sampled) and assigned."""
    now = utcnow()
    async with transaction(app[keys.sessions]) as session:
        consultation = await session.get_one(Consultation, uuid.UUID(consultation_id))
        consultation.status = ConsultationStatus.completed
        consultation.admitted_at, consultation.ended_at = now - dt.timedelta(minutes=15), now
        await services.sample_pending(session, secrets=load_qa_secrets(app[keys.settings]),
                                      policy=sampling.SamplingPolicy(), zone=ZONE, now=now)
        await assignment.assign_pending(session, settings=app[keys.settings], now=now)


async def _review(app: Any) -> Review:
    async with app[keys.read_sessions]() as session:
        return (await session.scalars(select(Review).order_by(Review.round.desc()).limit(1))).one()


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A completed, recorded, sampled consultation; one expert who practises as its physician, two who do not."""
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    clinic["own"] = await _expert(client, practises_as=clinic["physician_id"])
    clinic["first"], clinic["second"] = await _expert(client), await _expert(client)
    await _complete_and_sample(client.app, clinic["consultation"])
    review = await _review(client.app)
    clinic["review"] = str(review.id)
    assigned = {clinic["first"][1]: clinic["first"], clinic["second"][1]: clinic["second"]}
    clinic["reviewer"] = assigned[review.expert_id]  # never the expert who practises as the physician
    clinic["other"] = next(pair for key, pair in assigned.items() if key != review.expert_id)
    return clinic


def _filled(**overrides: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {key: {"answer": "yes"} for key in ITEMS}
    answers.update(overrides)
    return {"answers": answers, "notes": [{"at": 4.5, "text": "The physician asks about chest pain"}],
            "summary": "Careful consultation"}


async def _submit(client: Any, account: Account, review: str, body: dict[str, Any]) -> dict[str, Any]:
    current = await (await client.get(f"/api/v1/qa/reviews/{review}", headers=account.auth)).json()
    saved = await client.put(f"/api/v1/qa/reviews/{review}/draft", headers={**account.auth,
                                                                            "If-Match": f'"{current["revision"]}"'},
                             json=body)
    assert saved.status == 200, await saved.text()
    submitted = await client.post(f"/api/v1/qa/reviews/{review}/submit", headers=account.auth)
    assert submitted.status == 200, await submitted.text()
    return dict(await submitted.json())


async def test_the_sample_goes_to_an_expert_who_is_not_the_physician_and_only_they_see_it(
        clinic: dict[str, Any]) -> None:
    client, review = clinic["client"], clinic["review"]
    reviewer, _ = clinic["reviewer"]
    listed = await (await client.get("/api/v1/qa/reviews", headers=reviewer.auth)).json()
    assert [item["id"] for item in listed["items"]] == [review]
    assert listed["items"][0]["status"] == "assigned"
    assert [item["key"] for item in listed["items"][0]["checklist"]["items"]] == ITEMS
    due = dt.date.fromisoformat(listed["items"][0]["due_on"])
    assert 7 <= (due - utcnow().astimezone(ZONE).date()).days <= 9  # five working days

    # The expert who practises as the physician, the other expert, the physician before it is done, the patient.
    for account in (clinic["own"][0], clinic["other"][0], clinic["doctor"]):
        assert (await client.get(f"/api/v1/qa/reviews/{review}", headers=account.auth)).status == 404
        assert (await (await client.get("/api/v1/qa/reviews", headers=account.auth)).json())["items"] == []
    assert (await client.get(f"/api/v1/qa/reviews/{review}", headers=clinic["patient"].auth)).status == 403

    opened = await client.get(f"/api/v1/qa/reviews/{review}", headers=reviewer.auth)
    assert opened.status == 200
    async with client.app[keys.read_sessions]() as session:
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "qa.review_opened"))).all()
    # Listed once, opened once: both are reads of what the review says about the patient's consultation.
    assert [(e.object_id, str(e.subject_patient_id), e.actor_user_id) for e in entries] == [
        (review, clinic["patient"].patient_id, uuid.UUID(reviewer.user_id))] * 2


async def test_the_assigned_expert_replays_the_recording_audited_and_nobody_else(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    url = f"/api/v1/recordings/{clinic['recording']}/media?participant=physician"
    played = await client.get(url, headers={**clinic["reviewer"][0].auth, "Range": "bytes=0-99"})
    assert played.status == 206
    assert len(await played.read()) == 100
    for account in (clinic["other"][0], clinic["own"][0]):
        assert (await client.get(url, headers=account.auth)).status == 404
    async with client.app[keys.read_sessions]() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.played"))).all()
    assert [(row.actor_role, row.actor_user_id) for row in rows] == [
        ("qa_expert", uuid.UUID(clinic["reviewer"][0].user_id))]


async def test_the_checklist_autosaves_refuses_bad_and_stale_drafts_and_submits_with_a_score(
        clinic: dict[str, Any]) -> None:
    client, review = clinic["client"], clinic["review"]
    reviewer = clinic["reviewer"][0]
    url = f"/api/v1/qa/reviews/{review}"
    bad = await client.put(f"{url}/draft", headers=reviewer.auth,
                           json={"answers": {"consent": {"answer": "maybe"}, "nonsense": {"answer": "yes"}}})
    assert bad.status == 422
    fields = {error["field"] for error in (await bad.json())["errors"]}
    assert "answers.consent.answer" in fields
    nonsense = await client.put(f"{url}/draft", headers=reviewer.auth, json={"answers": {"nonsense": {}}})
    assert [e["field"] for e in (await nonsense.json())["errors"]] == ["answers.nonsense"]

    draft = {"answers": {"consent": {"answer": "no", "comment": "", "at": 12}}, "notes": [], "summary": ""}
    saved = await client.put(f"{url}/draft", headers={**reviewer.auth, "If-Match": '"0"'}, json=draft)
    assert saved.status == 200, await saved.text()
    body = await saved.json()
    assert (body["status"], body["revision"], saved.headers["ETag"]) == ("in_review", 1, '"1"')
    stale = await client.put(f"{url}/draft", headers={**reviewer.auth, "If-Match": '"0"'}, json=draft)
    assert stale.status == 412
    assert (await stale.json())["current_revision"] == 1

    incomplete = await client.post(f"{url}/submit", headers=reviewer.auth)
    assert incomplete.status == 422
    problems = {error["field"] for error in (await incomplete.json())["errors"]}
    assert "answers.consent.comment" in problems
    assert "answers.history.answer" in problems
    assert (await _review(client.app)).status is ReviewStatus.in_review  # nothing submitted

    done = await _submit(client, reviewer, review, _filled(consent={"answer": "no", "comment": "Not re-read",
                                                                    "at": 12}, technical={"answer": "na"}))
    assert (done["status"], done["critical_failures"], done["failed_items"]) == ("submitted", 1, ["consent"])
    weights = {item["key"]: item["weight"] for item in DEFAULT_CHECKLIST["items"]}
    possible = sum(weights.values()) - weights["technical"]
    assert done["score"] == round(100 * (possible - weights["consent"]) / possible, 1)
    assert done["notes"] == [{"at": 4.5, "text": "The physician asks about chest pain"}]
    late = await client.put(f"{url}/draft", headers=reviewer.auth, json=draft)
    assert late.status == 409  # a submitted review is no longer a draft


async def test_the_physician_sees_the_done_review_without_the_expert_and_acknowledges_it(
        clinic: dict[str, Any]) -> None:
    client, review, doctor = clinic["client"], clinic["review"], clinic["doctor"]
    await _submit(client, clinic["reviewer"][0], review, _filled())
    listed = await (await client.get("/api/v1/qa/reviews", headers=doctor.auth)).json()
    assert [(item["id"], item["expert_id"], item["score"]) for item in listed["items"]] == [(review, None, 100.0)]
    other_doctor = await create_staff(client, Role.physician)
    assert (await client.get(f"/api/v1/qa/reviews/{review}", headers=other_doctor.auth)).status == 404
    assert (await client.post(f"/api/v1/qa/reviews/{review}/acknowledge", headers=other_doctor.auth)).status == 404
    assert (await client.post(f"/api/v1/qa/reviews/{review}/acknowledge",
                              headers=clinic["reviewer"][0].auth)).status == 403

    acknowledged = await client.post(f"/api/v1/qa/reviews/{review}/acknowledge", headers=doctor.auth)
    assert acknowledged.status == 200
    assert (await acknowledged.json())["status"] == "acknowledged"
    again = await client.post(f"/api/v1/qa/reviews/{review}/dispute", headers=doctor.auth, json={"response": "x"})
    assert again.status == 409


async def test_a_dispute_goes_to_another_expert_whose_review_closes_both(clinic: dict[str, Any]) -> None:
    client, review, doctor = clinic["client"], clinic["review"], clinic["doctor"]
    await _submit(client, clinic["reviewer"][0], review, _filled(history={"answer": "no", "comment": "Brief"}))
    for blank in ("", "   \n"):
        empty = await client.post(f"/api/v1/qa/reviews/{review}/dispute", headers=doctor.auth,
                                  json={"response": blank})
        assert empty.status == 422
        assert [e["field"] for e in (await empty.json())["errors"]] == ["response"]
    disputed = await client.post(f"/api/v1/qa/reviews/{review}/dispute", headers=doctor.auth,
                                 json={"response": "The history was taken in the previous visit"})
    assert disputed.status == 200
    assert (await disputed.json())["status"] == "disputed"

    second = await _review(client.app)
    assert second.round == 2
    assert second.expert_id == clinic["other"][1]  # neither the first reviewer nor the physician's own expert
    assert (await client.get(f"/api/v1/qa/reviews/{second.id}", headers=doctor.auth)).status == 404  # not done
    closed = await _submit(client, clinic["other"][0], str(second.id), _filled())
    assert closed["status"] == "closed"
    first = await (await client.get(f"/api/v1/qa/reviews/{review}", headers=doctor.auth)).json()
    assert first["status"] == "closed"
    assert first["response"] == "The history was taken in the previous visit"
    mine = await (await client.get("/api/v1/qa/reviews", headers=doctor.auth)).json()
    assert sorted(item["round"] for item in mine["items"]) == [1, 2]
    assert (await client.post(f"/api/v1/qa/reviews/{second.id}/dispute", headers=doctor.auth,
                              json={"response": "again"})).status == 409


async def test_an_admin_reassigns_an_open_review_but_never_to_the_physicians_own_expert(
        clinic: dict[str, Any]) -> None:
    client, review = clinic["client"], clinic["review"]
    boss = await admin(client)
    await client.put(f"/api/v1/qa/reviews/{review}/draft", headers=clinic["reviewer"][0].auth,
                     json={"answers": {"consent": {"answer": "yes"}}})
    refused = await client.post(f"/api/v1/qa/reviews/{review}/reassign", headers=boss.auth,
                                json={"expert_id": str(clinic["own"][1])})
    assert refused.status == 409
    assert [e["field"] for e in (await refused.json())["errors"]] == ["expert_id"]
    assert (await client.post(f"/api/v1/qa/reviews/{review}/reassign", headers=clinic["reviewer"][0].auth,
                              json={})).status == 403
    moved = await client.post(f"/api/v1/qa/reviews/{review}/reassign", headers=boss.auth, json={})
    assert moved.status == 200, await moved.text()
    body = await moved.json()
    assert (body["expert_id"], body["status"], body["answers"]) == (str(clinic["other"][1]), "assigned", {})
    assert (await client.get(f"/api/v1/qa/reviews/{review}", headers=clinic["reviewer"][0].auth)).status == 404
    assert (await client.get(f"/api/v1/qa/reviews/{review}", headers=clinic["other"][0].auth)).status == 200


async def test_overdue_reviews_are_shown_and_their_expert_mailed_once_a_day(clinic: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    client, app = clinic["client"], clinic["client"].app
    async with transaction(app[keys.sessions]) as session:
        review = await session.get_one(Review, uuid.UUID(clinic["review"]))
        review.due_on = utcnow().astimezone(ZONE).date() - dt.timedelta(days=1)
    listed = await (await client.get("/api/v1/qa/reviews?status=open", headers=clinic["reviewer"][0].auth)).json()
    assert listed["items"][0]["overdue"] is True
    outbox = OutboxSender(tmp_path / "outbox", sender="QA <qa@clinic.example>")
    for _ in range(2):  # the second run the same day mails nobody
        async with transaction(app[keys.sessions]) as session:
            mailed = await reminders.remind(session, sender=outbox, settings=app[keys.settings], now=utcnow())
    assert mailed == 0
    [mail] = list((tmp_path / "outbox" / "email").iterdir())
    message = message_from_bytes(mail.read_bytes())
    async with app[keys.read_sessions]() as session:
        email = await session.scalar(select(User.email).where(User.id == uuid.UUID(clinic["reviewer"][0].user_id)))
    assert message["To"] == email
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "/qa/queue" in body
    assert clinic["patient"].email not in body


async def test_a_sample_waits_when_no_expert_may_take_it(aiohttp_client: Any, tmp_path: Path,
                                                         database_url: str) -> None:
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    await _expert(client, practises_as=clinic["physician_id"])
    await _complete_and_sample(client.app, clinic["consultation"])
    async with client.app[keys.read_sessions]() as session:
        assert await assignment.unassigned(session) == [uuid.UUID(clinic["consultation"])]
        assert (await session.scalars(select(Review))).all() == []
    newcomer = await _expert(client)
    async with transaction(client.app[keys.sessions]) as session:
        [made] = await assignment.assign_pending(session, settings=client.app[keys.settings], now=utcnow())
    assert made.expert_id == newcomer[1]


async def test_an_admin_names_an_experts_own_practice_and_department_when_creating_them(
        clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    boss = await admin(client)
    body = {"role": "qa_expert", "email": "senior@clinic.example", "password": "a long enough password",
            "full_name": "Senior Expert", "department": "therapy", "practises_as": clinic["physician_id"]}
    made = await client.post("/api/v1/admin/users", headers=boss.auth, json=body)
    assert made.status == 201, await made.text()
    async with client.app[keys.read_sessions]() as session:
        expert = (await session.scalars(select(QaExpert).where(
            QaExpert.user_id == uuid.UUID((await made.json())["id"])))).one()
        loads = await assignment.expert_loads(session)
    assert (expert.department, str(expert.physician_id)) == ("therapy", clinic["physician_id"])
    assert {load.expert_id: load.physician_id for load in loads}[expert.id] == expert.physician_id
    unknown = await client.post("/api/v1/admin/users", headers=boss.auth,
                                json={**body, "email": "x@clinic.example", "practises_as": str(uuid.uuid4())})
    assert unknown.status == 422
    assert [e["field"] for e in (await unknown.json())["errors"]] == ["practises_as"]
    wrong_role = await client.post("/api/v1/admin/users", headers=boss.auth,
                                   json={**body, "email": "y@clinic.example", "role": "admin"})
    assert wrong_role.status == 422


async def test_an_acknowledgement_racing_a_dispute_leaves_one_of_them(clinic: dict[str, Any]) -> None:
    """Two tabs of the physician: on PostgreSQL both used to pass their checks on the copy they had read."""
    client, app = clinic["client"], clinic["client"].app
    await _submit(client, clinic["reviewer"][0], clinic["review"], _filled())
    async with app[keys.read_sessions]() as session:
        reader = await reviews.reader_for(session, uuid.UUID(clinic["doctor"].user_id), Role.physician)

    async def act(action: str) -> str:
        try:
            async with transaction(app[keys.sessions]) as session:
                review = await reviews.get(session, reader, uuid.UUID(clinic["review"]))
                await asyncio.sleep(0.05)  # both have read the submitted review before either writes
                if action == "acknowledge":
                    await reviews.acknowledge(session, review, reader, now=utcnow(), ctx=audit.SYSTEM)
                else:
                    await reviews.dispute(session, review, reader, response="No", settings=app[keys.settings],
                                          now=utcnow(), ctx=audit.SYSTEM)
            return action
        except WrongStep:
            return "refused"

    outcomes = sorted(await asyncio.gather(act("acknowledge"), act("dispute")))
    assert outcomes in (["acknowledge", "refused"], ["dispute", "refused"])
    async with app[keys.read_sessions]() as session:
        rounds = (await session.scalars(select(Review).order_by(Review.round))).all()
    if "acknowledge" in outcomes:
        assert [r.status for r in rounds] == [ReviewStatus.acknowledged]
    else:
        assert [r.status for r in rounds] == [ReviewStatus.disputed, ReviewStatus.assigned]


async def test_reassigning_a_second_review_never_returns_it_to_the_first_expert(clinic: dict[str, Any]) -> None:
    client, doctor = clinic["client"], clinic["doctor"]
    await _submit(client, clinic["reviewer"][0], clinic["review"], _filled())
    disputed = await client.post(f"/api/v1/qa/reviews/{clinic['review']}/dispute", headers=doctor.auth,
                                 json={"response": "The history was taken"})
    assert disputed.status == 200
    second = await _review(client.app)
    assert second.expert_id == clinic["other"][1]
    boss = await admin(client)
    # Only the first reviewer (and the physician's own expert) remain: nobody may take it.
    refused = await client.post(f"/api/v1/qa/reviews/{second.id}/reassign", headers=boss.auth, json={})
    assert refused.status == 409
    named = await client.post(f"/api/v1/qa/reviews/{second.id}/reassign", headers=boss.auth,
                              json={"expert_id": str(clinic["reviewer"][1])})
    assert named.status == 409
    newcomer = await _expert(client)
    moved = await client.post(f"/api/v1/qa/reviews/{second.id}/reassign", headers=boss.auth, json={})
    assert (await moved.json())["expert_id"] == str(newcomer[1])


async def test_an_admin_publishes_a_new_checklist_version_and_past_reviews_keep_theirs(
        clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    boss = await admin(client)
    body = {"title": {"ru": "Телеконсультация, ред. 2", "en": "Teleconsultation, edition 2"},
            "items": [{"key": "consent", "text": {"ru": "Согласие", "en": "Consent"}, "weight": 3, "critical": True},
                      {"key": "history", "text": {"ru": "Анамнез", "en": "History"}, "weight": 2}]}
    for bad, field in (({**body, "items": [body["items"][0], body["items"][0]]}, "items"),
                       ({**body, "items": [{**body["items"][1], "weight": 0}]}, "items.0.weight"),
                       ({**body, "items": [{**body["items"][1], "key": "Bad Key"}]}, "items.0.key")):
        refused = await client.post("/api/v1/qa/checklists", headers=boss.auth, json=bad)
        assert refused.status == 422
        assert field in [e["field"] for e in (await refused.json())["errors"]]
    assert (await client.post("/api/v1/qa/checklists", headers=clinic["reviewer"][0].auth,
                              json=body)).status == 403
    published = await client.post("/api/v1/qa/checklists", headers=boss.auth, json=body)
    assert published.status == 201, await published.text()
    assert ((await published.json())["code"], (await published.json())["version"]) == ("teleconsultation", 2)

    listed = await (await client.get("/api/v1/qa/checklists", headers=clinic["reviewer"][0].auth)).json()
    assert [(item["code"], item["version"]) for item in listed["items"]] == [("teleconsultation", 2),
                                                                             ("teleconsultation", 1)]
    assert (await client.get("/api/v1/qa/checklists", headers=clinic["doctor"].auth)).status == 403
    review = await (await client.get(f"/api/v1/qa/reviews/{clinic['review']}",
                                     headers=clinic["reviewer"][0].auth)).json()
    assert review["checklist"]["version"] == 1  # assigned before: filled against the version it was given
    async with transaction(client.app[keys.sessions]) as session:
        assert (await checklists.current(session)).version == 2  # what new reviews get
        entry = (await session.scalars(select(AuditEntry).where(
            AuditEntry.action == "qa.checklist_published"))).one()
    assert entry.detail == {"code": "teleconsultation", "version": 2}
