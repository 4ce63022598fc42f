"""QA sampling in the database: exactly one decision per completed consultation, even when two sampling runs
race; the facts the targeted rules read; the monthly top-up to the floor (issue 7)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from media.recording.models import Recording, RecordingState
from qa_audit import sampling, services
from qa_audit.models import SamplingDecision
from server import keys
from server.audit.models import AuditEntry
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_qa_secret, load_qa_secrets
from server.scheduling.models import Consultation
from tests.integration.test_protocol import _through_call
from tests.scheduling_helpers import booked_clinic

ZONE = ZoneInfo("Europe/Moscow")
ONLY_THE_DRAW = sampling.SamplingPolicy(first_consultations=0, min_call_seconds=0)


async def completed_clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    await _through_call(clinic["client"], clinic["consultation"], clinic["patient"], clinic["doctor"],
                        clinic["catalogue"]["checkin"])
    return clinic


async def _decide(app: Any, consultation_id: str, policy: sampling.SamplingPolicy) -> SamplingDecision:
    async with transaction(app[keys.sessions]) as session:
        consultation = await session.get(Consultation, uuid.UUID(consultation_id))
        assert consultation is not None
        return await services.decide_once(session, consultation, secret=load_qa_secret(app[keys.settings]),
                                          policy=policy, zone=ZONE, now=utcnow())


async def _rows(app: Any) -> list[SamplingDecision]:
    async with app[keys.read_sessions]() as session:
        return list((await session.scalars(select(SamplingDecision))).all())


async def test_two_sampling_runs_at_once_make_exactly_one_decision(aiohttp_client: Any, tmp_path: Path,
                                                                   database_url: str) -> None:
    clinic = await completed_clinic(aiohttp_client, tmp_path, database_url)
    app = clinic["client"].app
    first, second = await asyncio.gather(*(_decide(app, clinic["consultation"], ONLY_THE_DRAW) for _ in range(2)))
    assert (first.draw_value, first.sampled) == (second.draw_value, second.sampled)
    [row] = await _rows(app)
    secret = load_qa_secret(app[keys.settings])
    value = sampling.draw_value(secret.key, uuid.UUID(clinic["consultation"]))
    assert row.draw_value == f"{value:016x}"  # an inspector with the secret recomputes it
    assert row.sampled == sampling.drawn(value, ONLY_THE_DRAW.rate)
    assert (row.secret_id, row.policy_version) == (secret.key_id, ONLY_THE_DRAW.version)
    async with app[keys.read_sessions]() as session:
        logged = await session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "qa.sampling_decided"))
    assert logged == 1

    # The sweep finds nothing left to decide, however often it runs.
    async with transaction(app[keys.sessions]) as session:
        assert await services.sample_pending(session, secrets=load_qa_secrets(app[keys.settings]),
                                             policy=ONLY_THE_DRAW, zone=ZONE, now=utcnow()) == 0


async def test_the_sweep_decides_completed_consultations_and_reads_their_facts(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await completed_clinic(aiohttp_client, tmp_path, database_url)
    app = clinic["client"].app
    async with transaction(app[keys.sessions]) as session:
        decided = await services.sample_pending(session, secrets=load_qa_secrets(app[keys.settings]),
                                                policy=sampling.SamplingPolicy(), zone=ZONE, now=utcnow())
    assert decided == 1
    [row] = await _rows(app)
    assert row.sampled  # the physician's first consultation here: sampled for it, whatever the draw
    assert "new_physician" in row.reasons
    async with app[keys.read_sessions]() as session:
        consultation = await session.get(Consultation, uuid.UUID(clinic["consultation"]))
        assert consultation is not None
        facts = await services.facts_for(session, consultation, zone=ZONE)
    assert facts.physician_consultation_number == 1
    assert facts.recording_state is None  # no call was held: nothing recorded
    assert row.month == consultation.starts_at.astimezone(ZONE).strftime("%Y-%m")


async def test_the_top_up_brings_a_physician_month_to_its_floor(aiohttp_client: Any, tmp_path: Path,
                                                                 database_url: str) -> None:
    clinic = await completed_clinic(aiohttp_client, tmp_path, database_url)
    app = clinic["client"].app
    never = sampling.SamplingPolicy(rate=Fraction(1, 10**18), first_consultations=0, min_call_seconds=0)
    row = await _decide(app, clinic["consultation"], never)
    assert not row.sampled  # the draw passed it over
    async with transaction(app[keys.sessions]) as session:
        added = await services.top_up_month(session, month=row.month, policy=ONLY_THE_DRAW, now=utcnow())
    assert added == [uuid.UUID(clinic["consultation"])]  # one consultation: ceil(10% x 1) = 1 must be sampled
    [after] = await _rows(app)
    assert after.sampled
    assert after.reasons == ["floor"]
    assert after.topped_up_at is not None
    async with transaction(app[keys.sessions]) as session:
        assert await services.top_up_month(session, month=row.month, policy=ONLY_THE_DRAW, now=utcnow()) == []


@pytest.mark.parametrize(("stop_reason", "failed"), [("media_failed", True), ("node_restarted", True),
                                                     ("stale", True), ("ended", False), ("paused", False),
                                                     ("consent_withdrawn", False)])
async def test_a_recording_stopped_by_a_failure_is_a_technical_failure(
        aiohttp_client: Any, tmp_path: Path, database_url: str, stop_reason: str, failed: bool) -> None:
    clinic = await completed_clinic(aiohttp_client, tmp_path, database_url)
    app = clinic["client"].app
    now = utcnow()
    async with transaction(app[keys.sessions]) as session:
        session.add(Recording(consultation_id=uuid.UUID(clinic["consultation"]), state=RecordingState.complete,
                              node="node-1", wrapped_key=None, key_id="k", started_at=now, stopped_at=now,
                              stop_reason=stop_reason, finalised_at=now))
    async with app[keys.read_sessions]() as session:
        consultation = await session.get_one(Consultation, uuid.UUID(clinic["consultation"]))
        facts = await services.facts_for(session, consultation, zone=ZONE)
        before = await services.facts_for(session, consultation, zone=ZONE,
                                          as_of=now - dt.timedelta(seconds=1))
    assert facts.technical_failure is failed
    assert (sampling.Reason.technical_failure in sampling.targeted_reasons(facts, sampling.SamplingPolicy())) is failed
    assert before.technical_failure is False  # a decision made before the failure did not know of it
