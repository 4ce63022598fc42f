"""A diagnosis or prescription refused in a primary consultation's protocol after the consultation's sampling
decision still samples it (qa_audit.late_reasons, issue 7): the sweep adds the reason late, audited, once however
often it runs; a refusal before the decision is in the decision itself; no refusal changes nothing. A month with
such late reasons replays clean, each counted from when it was added; one with no refusal behind it, or a refusal
never applied, shows up."""

from __future__ import annotations

import datetime as dt
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from qa_audit import late_reasons, sampling, services
from qa_audit.models import SamplingDecision
from qa_audit.replay import Kind
from server import keys
from server.audit import services as audit
from server.audit.models import AuditEntry
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import QaSecrets, load_qa_secret
from server.scheduling.models import Consultation
from tests.integration.test_protocol import NOTES, _save, _through_call
from tests.integration.test_qa_replay import CLI, MONTH, ZONE, Clinic, held, open_clinic, rows
from tests.scheduling_helpers import booked_clinic

#: The draw passes everything over and no rule but the ones fed late fires: a consultation stays unsampled.
NEVER = sampling.SamplingPolicy(rate=Fraction(1, 10**18), first_consultations=0, min_call_seconds=0)
DIAGNOSIS = {**NOTES, "diagnosis": {"icd10": "J06.9", "text": "ОРВИ"}}


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A primary consultation whose call has ended, through the real endpoints; not yet decided."""
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    await _through_call(clinic["client"], clinic["consultation"], clinic["patient"], clinic["doctor"],
                        clinic["catalogue"]["checkin"])
    return clinic


async def decide(client: TestClient, consultation_id: str, policy: sampling.SamplingPolicy) -> SamplingDecision:
    async with transaction(client.app[keys.sessions]) as session:
        consultation = await session.get(Consultation, uuid.UUID(consultation_id))
        assert consultation is not None
        return await services.decide_once(session, consultation, secret=load_qa_secret(client.app[keys.settings]),
                                          policy=policy, zone=ZONE, now=utcnow())


async def sweep(client: TestClient, policy: sampling.SamplingPolicy, *, now: dt.datetime | None = None) -> int:
    """The sampling task's run: decide what is waiting, then add what arose since (feedback, refusals)."""
    async with transaction(client.app[keys.sessions]) as session:
        return await services.sample_pending(session, secrets=QaSecrets(load_qa_secret(client.app[keys.settings])),
                                             policy=policy, zone=ZONE, now=now or utcnow())


async def decision_of(client: TestClient, consultation_id: str) -> SamplingDecision:
    async with client.app[keys.read_sessions]() as session:
        return (await session.scalars(select(SamplingDecision).where(
            SamplingDecision.consultation_id == uuid.UUID(consultation_id)))).one()


async def entries(client: TestClient, action: str) -> list[AuditEntry]:
    async with client.app[keys.read_sessions]() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                           .order_by(AuditEntry.seq))).all())


async def refuse(client: TestClient, doctor: Any, consultation_id: str) -> None:
    refused = await _save(client, doctor, consultation_id, DIAGNOSIS)
    assert refused.status == 422, await refused.text()
    assert (await refused.json())["code"] == "primary_consultation_no_diagnosis"


# --- the sweep ------------------------------------------------------------------------------------------------------


async def test_a_refusal_after_an_unsampled_decision_samples_it_with_the_reason(clinic: dict[str, Any]) -> None:
    client, consultation = clinic["client"], clinic["consultation"]
    before = await decide(client, consultation, NEVER)
    assert (before.sampled, before.reasons) == (False, [])

    await refuse(client, clinic["doctor"], consultation)  # the protocol, written after the call
    assert (await decision_of(client, consultation)).sampled is False  # the refusal itself knows nothing of QA
    assert await sweep(client, NEVER) == 0  # nothing waiting to be decided...
    after = await decision_of(client, consultation)
    assert (after.sampled, after.reasons) == (True, ["forbidden_fields"])  # ...but the decision changed
    assert (after.draw_value, after.decided_at, after.policy_version) == (
        before.draw_value, before.decided_at, before.policy_version)  # the same decision, not a new one
    [late] = await entries(client, late_reasons.LATE)
    assert (late.object_id, str(late.subject_patient_id)) == (consultation, clinic["patient"].patient_id)
    assert late.detail == {"reasons": ["forbidden_fields"], "was_sampled": False}

    # Twice (a retried task, two workers): nothing more, and no second audit entry.
    assert await sweep(client, NEVER) == 0
    async with transaction(client.app[keys.sessions]) as session:
        assert await late_reasons.apply_pending_refusals(session, policy=NEVER, now=utcnow()) == 0
    again = await decision_of(client, consultation)
    assert (again.sampled, again.reasons) == (True, ["forbidden_fields"])
    assert len(await entries(client, late_reasons.LATE)) == 1


async def test_a_refusal_adds_its_reason_to_a_decision_already_sampled(clinic: dict[str, Any]) -> None:
    client, consultation = clinic["client"], clinic["consultation"]
    before = await decide(client, consultation, sampling.SamplingPolicy())
    assert before.sampled  # the physician's first consultation here
    await refuse(client, clinic["doctor"], consultation)
    await refuse(client, clinic["doctor"], consultation)  # tried twice: one reason all the same
    await sweep(client, sampling.SamplingPolicy())
    after = await decision_of(client, consultation)
    assert after.reasons == [*before.reasons, "forbidden_fields"]
    [late] = await entries(client, late_reasons.LATE)
    assert late.detail == {"reasons": ["forbidden_fields"], "was_sampled": True}


async def test_a_refusal_before_the_decision_is_in_the_decision_itself(clinic: dict[str, Any]) -> None:
    client, consultation = clinic["client"], clinic["consultation"]
    await refuse(client, clinic["doctor"], consultation)
    assert await sweep(client, NEVER) == 1  # decided now, on facts that include the refusal
    decided = await decision_of(client, consultation)
    assert (decided.sampled, decided.reasons) == (True, ["forbidden_fields"])
    [made] = await entries(client, "qa.sampling_decided")
    assert made.detail == {"sampled": True, "reasons": ["forbidden_fields"]}
    assert await sweep(client, NEVER) == 0
    assert await entries(client, late_reasons.LATE) == []  # nothing was late


async def test_no_refusal_changes_nothing(clinic: dict[str, Any]) -> None:
    client, consultation = clinic["client"], clinic["consultation"]
    await decide(client, consultation, NEVER)
    saved = await _save(client, clinic["doctor"], consultation, NOTES)  # a primary protocol as it should be
    assert saved.status == 200, await saved.text()
    assert await sweep(client, NEVER) == 0
    after = await decision_of(client, consultation)
    assert (after.sampled, after.reasons) == (False, [])
    assert await entries(client, late_reasons.LATE) == []


async def test_the_sweep_leaves_old_refusals_and_a_switched_off_rule_alone(clinic: dict[str, Any]) -> None:
    client, consultation = clinic["client"], clinic["consultation"]
    await decide(client, consultation, NEVER)
    await refuse(client, clinic["doctor"], consultation)
    switched_off = sampling.SamplingPolicy(rate=NEVER.rate, first_consultations=0,
                                           targeted=sampling.TARGETED - {sampling.Reason.forbidden_fields})
    async with transaction(client.app[keys.sessions]) as session:
        assert await late_reasons.apply_pending_refusals(session, policy=switched_off, now=utcnow()) == 0
        later = utcnow() + late_reasons.RECONCILE_WINDOW + dt.timedelta(minutes=1)  # the sweep was down that long
        assert await late_reasons.apply_pending_refusals(session, policy=NEVER, now=later) == 0
    assert (await decision_of(client, consultation)).sampled is False
    assert await entries(client, late_reasons.LATE) == []


# --- the inspector's replay -----------------------------------------------------------------------------------------


def _at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, tzinfo=dt.UTC)


async def refused_at(clinic: Clinic, consultation_id: uuid.UUID, at: dt.datetime) -> None:
    """The entry the protocol's refusal leaves (server.records.services.refuse_forbidden), at a chosen time."""
    async with transaction(clinic.app[keys.sessions]) as session:
        await audit.record(session, ctx=CLI, action=late_reasons.REFUSED, object_type="consultation",
                           object_id=consultation_id, subject_patient_id=clinic.patient_id, outcome="failure",
                           detail={"kind": "primary", "rules": ["primary_consultation_no_diagnosis"],
                                   "fields": ["diagnosis"]}, now=at)


async def run_sweep(clinic: Clinic, *, at: dt.datetime) -> int:
    async with transaction(clinic.app[keys.sessions]) as session:
        return await services.sample_pending(session, secrets=clinic.secrets(), policy=NEVER, zone=ZONE, now=at)


async def blamed(clinic: Clinic) -> set[tuple[Kind, uuid.UUID | None]]:
    async with transaction(clinic.app[keys.sessions]) as session:
        report = await services.replay_month(session, month=MONTH, secrets=clinic.secrets(), policy=NEVER, zone=ZONE,
                                             ctx=CLI, now=utcnow())
    return {(d.kind, d.consultation_id) for d in report.differences}


async def test_a_month_with_late_refusals_replays_clean_and_a_forged_one_shows_up(aiohttp_client: Any,
                                                                                   app: Any) -> None:
    clinic = await open_clinic(aiohttp_client, app, physicians=2)
    made = await held(clinic, clinic.physicians[0], list(range(1, 11)))  # the floor: 1 of 10
    [early, _, _] = await held(clinic, clinic.physicians[1], [5, 6, 7])
    secret = clinic.secrets().current.key
    by_draw = sorted(made, key=lambda cid: sampling.draw_value(secret, cid))
    picked, late, forged, missed = by_draw[:4]  # the top-up picks the lowest draw value not sampled by then
    await refused_at(clinic, early, _at(1, 0) - dt.timedelta(hours=1))  # before the decision: a fact of it
    assert await run_sweep(clinic, at=_at(1, 0)) == 13
    assert (await rows(clinic))[early].reasons == ["forbidden_fields"]
    assert not (await rows(clinic))[late].sampled

    # Refused after the decision, before the top-up, but added by the sweep only after it: the top-up needed one
    # more then, and the replay counts the late reason from when it was added, not from the refusal.
    await refused_at(clinic, late, _at(1, 6))
    async with transaction(app[keys.sessions]) as session:
        topped = await services.top_up_due(session, policy=NEVER, zone=ZONE, now=_at(2))
    assert topped == {"2026-09": [picked], "2026-10": []}  # the other physician's floor is met by `early`
    await run_sweep(clinic, at=_at(2, 13))
    stored = await rows(clinic)
    assert {cid: row.reasons for cid, row in stored.items() if row.sampled} == {
        early: ["forbidden_fields"], picked: ["floor"], late: ["forbidden_fields"]}
    assert await blamed(clinic) == set()

    await run_sweep(clinic, at=_at(2, 14))  # again: nothing more
    assert {cid: (row.sampled, row.reasons) for cid, row in (await rows(clinic)).items()} == {
        cid: (row.sampled, row.reasons) for cid, row in stored.items()}
    assert await blamed(clinic) == set()

    # A reason written in with no refusal behind it (even with a late entry to go with it), and a refusal the
    # sweep never applied: both show up, and nothing else is blamed.
    async with transaction(app[keys.sessions]) as session:
        await session.execute(update(SamplingDecision).where(SamplingDecision.consultation_id == forged)
                              .values(sampled=True, reasons=["forbidden_fields"]))
        await audit.record(session, ctx=audit.SYSTEM, action=late_reasons.LATE, object_type="consultation",
                           object_id=forged, detail={"reasons": ["forbidden_fields"], "was_sampled": False},
                           now=_at(3))
    await refused_at(clinic, missed, _at(3))
    found = await blamed(clinic)
    assert found == {(Kind.reasons, forged), (Kind.sampled, forged), (Kind.reasons, missed), (Kind.sampled, missed)}

    await run_sweep(clinic, at=_at(3, 1))  # the sweep catches up with the refusal; the forgery stays
    assert (await rows(clinic))[missed].reasons == ["forbidden_fields"]
    assert await blamed(clinic) == {(Kind.reasons, forged), (Kind.sampled, forged)}
