"""The inspector's replay and QA secret rotation on a real database (issue 7): a month sampled and topped up
replays clean, and a tampered draw value, a flipped `sampled`, a deleted decision or another secret each show up;
a rotation mid-month draws each day under its secret and replays clean with both; the sampler refuses a secret
changed without a recorded rotation; the daily top-up covers the previous month in its first days; facts are
replayed as they stood at the decision; `python -m server qa ...` as an inspector and an admin run it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import stat
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from sqlalchemy import delete, func, select, update

from media.recording.models import Recording, RecordingState
from qa_audit import feedback, replay, sampling, services
from qa_audit.feedback_models import ConsultationFeedback
from qa_audit.models import SamplingDecision, SecretRotation
from qa_audit.replay import Kind
from server import keys
from server.app import create_app
from server.audit import services as audit
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import KeyConfigurationError, QaSecrets, load_qa_secret, new_qa_secret
from server.people.models import Physician
from server.scheduling import conditions
from server.scheduling.catalogue import load_conditions, load_questionnaires
from server.scheduling.models import (
    ConditionVersion,
    Consultation,
    ConsultationKind,
    ConsultationStatus,
    Questionnaire,
)
from tests.factories import create_staff, register_patient
from tests.integration.test_cli import Install

ZONE = ZoneInfo("Europe/Moscow")
POLICY = sampling.SamplingPolicy()
MONTH = "2026-09"
PATIENT_NAME = "Евдокия Проверочная"
CLI = audit.AuditContext(actor_role="test")


@dataclass
class Clinic:
    app: web.Application
    physicians: list[uuid.UUID]
    patient_id: uuid.UUID
    patient_user_id: uuid.UUID
    condition_id: uuid.UUID
    questionnaire_id: uuid.UUID

    def secrets(self) -> QaSecrets:
        return QaSecrets(load_qa_secret(self.app[keys.settings]))


async def open_clinic(aiohttp_client: Any, app: web.Application, physicians: int) -> Clinic:
    """Physicians and a patient made through the real services; the catalogue as `make serve` seeds it."""
    client = await aiohttp_client(app)
    async with transaction(app[keys.sessions]) as session:
        await conditions.seed_catalogue(session, conditions=load_conditions(), questionnaires=load_questionnaires(),
                                        now=utcnow())
    accounts = [await create_staff(client, Role.physician, signed_in=False) for _ in range(physicians)]
    patient = await register_patient(client, full_name=PATIENT_NAME, signed_in=False)
    async with app[keys.read_sessions]() as session:
        ids = [(await session.scalars(select(Physician.id).where(Physician.user_id == uuid.UUID(a.user_id)))).one()
               for a in accounts]
        condition = (await session.scalars(select(ConditionVersion.id).limit(1))).one()
        questionnaire = (await session.scalars(select(Questionnaire.id).limit(1))).one()
    assert patient.patient_id is not None
    return Clinic(app, ids, uuid.UUID(patient.patient_id), uuid.UUID(patient.user_id), condition, questionnaire)


async def held(clinic: Clinic, physician: uuid.UUID, days: list[int], *, month: tuple[int, int] = (2026, 9),
               status: ConsultationStatus = ConsultationStatus.completed) -> list[uuid.UUID]:
    """Consultations held on those days (15-minute calls), as the call flow leaves them."""
    made = []
    async with transaction(clinic.app[keys.sessions]) as session:
        for index, day in enumerate(days):
            starts = dt.datetime(*month, day, 8 + index % 10, 20 * (index // 10 % 3), tzinfo=ZONE).astimezone(dt.UTC)
            consultation = Consultation(
                patient_id=clinic.patient_id, physician_id=physician, condition_id=clinic.condition_id,
                kind=ConsultationKind.primary, status=status, starts_at=starts,
                ends_at=starts + dt.timedelta(minutes=20), complaint="Кашель", questionnaire_id=clinic.questionnaire_id,
                booked_by_user_id=clinic.patient_user_id, admitted_at=starts,
                ended_at=starts + dt.timedelta(minutes=15))
            session.add(consultation)
            await session.flush()
            made.append(consultation.id)
    return made


async def sample(clinic: Clinic, *, at: dt.datetime, secrets: QaSecrets | None = None) -> int:
    async with transaction(clinic.app[keys.sessions]) as session:
        return await services.sample_pending(session, secrets=secrets or clinic.secrets(), policy=POLICY, zone=ZONE,
                                             now=at)


async def top_up(clinic: Clinic, *, at: dt.datetime) -> dict[str, list[uuid.UUID]]:
    async with transaction(clinic.app[keys.sessions]) as session:
        return await services.top_up_due(session, policy=POLICY, zone=ZONE, now=at)


async def replayed(clinic: Clinic, *, secrets: QaSecrets | None = None, month: str = MONTH) -> replay.Report:
    async with transaction(clinic.app[keys.sessions]) as session:
        return await services.replay_month(session, month=month, secrets=secrets or clinic.secrets(),
                                           policy=POLICY, zone=ZONE, ctx=CLI, now=utcnow())


async def rows(clinic: Clinic) -> dict[uuid.UUID, SamplingDecision]:
    async with clinic.app[keys.read_sessions]() as session:
        return {row.consultation_id: row for row in (await session.scalars(select(SamplingDecision))).all()}


async def change(clinic: Clinic, consultation_id: uuid.UUID, **values: Any) -> None:
    async with transaction(clinic.app[keys.sessions]) as session:
        await session.execute(update(SamplingDecision).where(SamplingDecision.consultation_id == consultation_id)
                              .values(**values))


def _at(day: int, hour: int = 12, month: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=dt.UTC)


def _found(report: replay.Report) -> set[tuple[Kind, uuid.UUID | None]]:
    return {(d.kind, d.consultation_id) for d in report.differences}


async def test_a_month_replays_clean_and_each_tampering_shows_up(aiohttp_client: Any, app: web.Application) -> None:
    clinic = await open_clinic(aiohttp_client, app, physicians=2)
    first = await held(clinic, clinic.physicians[0], [1 + n % 29 for n in range(25)])
    second = await held(clinic, clinic.physicians[1], [2 + 2 * n for n in range(12)])
    assert await sample(clinic, at=_at(1, 0)) == 37
    await top_up(clinic, at=_at(2))  # the 2nd of October still tops September up
    report = await replayed(clinic)
    assert report.ok, [d.line() for d in report.differences]
    assert (report.decisions, report.closed) == (37, True)
    assert {(p.physician_id, p.consultations, p.met) for p in report.physicians} == {
        (clinic.physicians[0], 25, True), (clinic.physicians[1], 12, True)}
    async with app[keys.read_sessions]() as session:
        logged = await session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "qa.sampling_replayed", AuditEntry.object_id == MONTH))
    assert logged == 1  # the inspector's look at the record is itself on the record

    stored = await rows(clinic)
    tampered, flipped = first[10], first[11]
    deleted = next(cid for cid in second if not stored[cid].sampled)  # the floor's count stays what it was
    await change(clinic, tampered, draw_value=f"{int(stored[tampered].draw_value, 16) ^ 1:016x}")
    await change(clinic, flipped, sampled=not stored[flipped].sampled)
    async with transaction(app[keys.sessions]) as session:
        await session.execute(delete(SamplingDecision).where(SamplingDecision.consultation_id == deleted))
    found = _found(await replayed(clinic))
    assert {(Kind.draw_value, tampered), (Kind.sampled, flipped), (Kind.undecided, deleted)} <= found
    assert {cid for _kind, cid in found} <= {tampered, flipped, deleted, None}  # nothing else is blamed

    stranger = QaSecrets(new_qa_secret())
    under_another = await replayed(clinic, secrets=stranger)
    unknown = {cid for kind, cid in _found(under_another) if kind is Kind.unknown_secret}
    assert unknown == set(first + second) - {deleted}


async def test_a_rotation_mid_month_draws_each_day_under_its_secret_and_replays_with_both(
        aiohttp_client: Any, app: web.Application) -> None:
    clinic = await open_clinic(aiohttp_client, app, physicians=1)
    made = await held(clinic, clinic.physicians[0], [1 + n + n // 2 for n in range(20)])  # the 1st to the 29th
    old, new = load_qa_secret(app[keys.settings]), new_qa_secret()
    async with transaction(app[keys.sessions]) as session:
        recorded = await services.record_rotation(session, new=new, held=QaSecrets(old),
                                                  effective_from=dt.date(2026, 9, 15), zone=ZONE, ctx=CLI,
                                                  now=_at(1, month=9), replacing=old.key_id)
    assert [(r.secret_id, r.effective_from) for r in recorded] == [
        (old.key_id, dt.date.min), (new.key_id, dt.date(2026, 9, 15))]  # the days before keep the old secret
    both = QaSecrets(new, {old.key_id: old.key})

    with pytest.raises(KeyConfigurationError, match="not the one recorded last"):
        await sample(clinic, at=_at(1, 0))  # still configured with the old secret: the change is not applied
    assert await sample(clinic, at=_at(1, 0), secrets=both) == 20
    stored = await rows(clinic)
    async with app[keys.read_sessions]() as session:
        starts = {c.id: c.starts_at.astimezone(ZONE).date() for c in
                  (await session.scalars(select(Consultation).where(Consultation.id.in_(made)))).all()}
    assert {cid: stored[cid].secret_id for cid in made} == {
        cid: (new.key_id if starts[cid] >= dt.date(2026, 9, 15) else old.key_id) for cid in made}
    await top_up(clinic, at=_at(3))

    assert (await replayed(clinic, secrets=both)).ok
    without_old = _found(await replayed(clinic, secrets=QaSecrets(new)))
    assert {cid for kind, cid in without_old if kind is Kind.unknown_secret} == {
        cid for cid in made if starts[cid] < dt.date(2026, 9, 15)}

    third = new_qa_secret()
    for refused, (secret, keyring, day) in {
        "already recorded": (new, both, dt.date(2026, 12, 1)),
        "must start later": (third, both, dt.date(2026, 9, 10)),
        "choose a date after 2026-09-29": (third, both, dt.date(2026, 9, 20)),
        f"outgoing QA secret {new.key_id} is not held": (third, QaSecrets(third), dt.date(2026, 12, 1)),
    }.items():
        with pytest.raises(services.RotationRefused, match=refused):
            async with transaction(app[keys.sessions]) as session:
                await services.record_rotation(session, new=secret, held=keyring, effective_from=day, zone=ZONE,
                                               ctx=CLI, now=utcnow())
    async with app[keys.read_sessions]() as session:
        assert await session.scalar(select(func.count()).select_from(SecretRotation)) == 2


async def test_the_sampler_refuses_a_secret_changed_without_a_recorded_rotation(aiohttp_client: Any,
                                                                                 app: web.Application) -> None:
    clinic = await open_clinic(aiohttp_client, app, physicians=1)
    await held(clinic, clinic.physicians[0], [1, 2])
    assert await sample(clinic, at=_at(1)) == 2
    await held(clinic, clinic.physicians[0], [3])
    with pytest.raises(KeyConfigurationError, match="no rotation is recorded"):
        await sample(clinic, at=_at(2), secrets=QaSecrets(new_qa_secret()))
    assert len(await rows(clinic)) == 2  # nothing drawn under the unrecorded secret
    assert await sample(clinic, at=_at(2)) == 1


async def test_the_daily_top_up_covers_the_previous_month_only_in_its_first_days(aiohttp_client: Any,
                                                                                  app: web.Application) -> None:
    clinic = await open_clinic(aiohttp_client, app, physicians=1)
    never = sampling.SamplingPolicy(rate=Fraction(1, 10**18), first_consultations=0)
    await held(clinic, clinic.physicians[0], [10, 20, 30])
    async with transaction(app[keys.sessions]) as session:
        assert await services.sample_pending(session, secrets=clinic.secrets(), policy=never, zone=ZONE,
                                             now=_at(1, 0)) == 3
    assert not any(row.sampled for row in (await rows(clinic)).values())
    assert await top_up(clinic, at=_at(5)) == {"2026-10": []}  # the 5th: September is closed, left alone
    report = await replayed(clinic)
    assert (Kind.below_floor, None) in _found(report)  # and the replay says so

    added = await top_up(clinic, at=_at(3, hour=20))  # the 3rd, 23:00 in Moscow: still September's grace
    assert set(added) == {"2026-09", "2026-10"}
    assert len(added["2026-09"]) == 1
    assert {row.reasons[-1] for row in (await rows(clinic)).values() if row.sampled} == {"floor"}


async def test_facts_are_replayed_as_they_stood_when_the_decision_was_made(aiohttp_client: Any,
                                                                            app: web.Application) -> None:
    clinic = await open_clinic(aiohttp_client, app, physicians=1)
    [later, erased, unsettled] = await held(clinic, clinic.physicians[0], [3, 4, 28])
    async with transaction(app[keys.sessions]) as session:
        session.add(Recording(consultation_id=erased, state=RecordingState.damaged, node="test", key_id="k",
                              finalised_at=_at(1, 0) - dt.timedelta(hours=2)))
        session.add(Recording(consultation_id=unsettled, state=RecordingState.stopped, node="test", key_id="k"))
        await session.execute(update(Consultation).where(Consultation.id == unsettled)
                              .values(ended_at=_at(1, 0) - dt.timedelta(minutes=5)))
    assert await sample(clinic, at=_at(1, 0)) == 2  # the stopped recording is still being finalised: wait
    assert "recording_damaged" in (await rows(clinic))[erased].reasons
    async with transaction(app[keys.sessions]) as session:
        await session.execute(update(Recording).where(Recording.consultation_id == unsettled)
                              .values(state=RecordingState.partial, finalised_at=_at(1, 0)))
    assert await sample(clinic, at=_at(1, 1)) == 1
    assert "recording_partial" in (await rows(clinic))[unsettled].reasons

    # After the decisions: the protocol refuses a diagnosis, and years later the damaged recording is erased.
    async with transaction(app[keys.sessions]) as session:
        consultation = await session.get(Consultation, later)
        assert consultation is not None
        await audit.record(session, ctx=CLI, action="protocol.forbidden_field_refused", object_type="consultation",
                           object_id=later, now=_at(2))
        await session.execute(update(Recording).where(Recording.consultation_id == erased)
                              .values(state=RecordingState.erased))
        now_facts = await services.facts_for(session, consultation, zone=ZONE)
        then_facts = await services.facts_for(session, consultation, zone=ZONE, as_of=_at(1, 0))
    assert now_facts.forbidden_fields_refused  # the record today...
    assert not then_facts.forbidden_fields_refused  # ...but not what the decision saw
    await sample(clinic, at=_at(2, 1))  # the sweep adds the refusal's reason late (qa_audit.late_reasons)
    assert (await rows(clinic))[later].reasons[-1] == "forbidden_fields"
    await top_up(clinic, at=_at(3))
    report = await replayed(clinic)
    assert report.ok, [d.line() for d in report.differences]  # the decision's facts, and the reason from then on


async def test_feedback_before_or_after_the_decision_replays_clean(aiohttp_client: Any, app: web.Application) -> None:
    clinic = await open_clinic(aiohttp_client, app, physicians=1)
    made = await held(clinic, clinic.physicians[0], list(range(1, 13)))
    early_word = made[8]
    async with transaction(app[keys.sessions]) as session:  # a complaint before the sweep: the decision reads it
        session.add(ConsultationFeedback(consultation_id=early_word, patient_id=clinic.patient_id, rating=1,
                                         complaint="Врач не выслушал", created_at=_at(1, 0) - dt.timedelta(hours=1)))
    await sample(clinic, at=_at(1, 0))
    await top_up(clinic, at=_at(2))
    stored = await rows(clinic)
    assert {"complaint", "low_rating"} <= set(stored[early_word].reasons)
    late_word = next(cid for cid in made[5:] if not stored[cid].sampled)  # past the physician's first five
    async with transaction(app[keys.sessions]) as session:  # a week later: the decision is changed then
        given = ConsultationFeedback(consultation_id=late_word, patient_id=clinic.patient_id, rating=5,
                                     complaint="Долго ждал", created_at=_at(9))
        session.add(given)
        await session.flush()
        await feedback.apply_feedback(session, given, policy=POLICY, now=_at(9))
    after = (await rows(clinic))[late_word]
    assert (after.sampled, after.reasons) == (True, ["complaint"])
    report = await replayed(clinic)
    assert report.ok, [d.line() for d in report.differences]

    async with transaction(app[keys.sessions]) as session:  # had the change not been made, the replay says so
        await session.execute(update(SamplingDecision).where(SamplingDecision.consultation_id == late_word)
                              .values(sampled=False, reasons=[]))
    assert {(Kind.reasons, late_word), (Kind.sampled, late_word)} <= _found(await replayed(clinic))


# --- The command line ----------------------------------------------------------------------------------------------


@pytest.fixture
def install(tmp_path: Path, database_url: str) -> Install:
    return Install(tmp_path, database_url)


async def test_qa_replay_and_rotate_secret_on_the_command_line(install: Install, aiohttp_client: Any) -> None:
    clinic = await open_clinic(aiohttp_client, create_app(install.settings()), physicians=1)
    made = await held(clinic, clinic.physicians[0], list(range(1, 21)))
    await sample(clinic, at=_at(1, 0))
    await top_up(clinic, at=_at(2))

    def run(*args: str, ok: bool = True) -> Any:
        return asyncio.to_thread(install.run, "qa", *args, ok=ok)

    clean = await run("replay", "--month", MONTH)
    assert "every decision replays as stored" in clean.stdout
    assert f"physician {clinic.physicians[0]}: 20 consultations" in clean.stdout

    victim = made[7]
    value = (await rows(clinic))[victim].draw_value
    await change(clinic, victim, draw_value="0" * 16)
    tampered = await run("replay", "--month", MONTH, ok=False)
    assert tampered.returncode == 1, tampered.stderr
    assert f"DIFFERENT draw_value: consultation {victim}" in tampered.stdout
    assert PATIENT_NAME not in tampered.stdout + tampered.stderr
    assert "Кашель" not in tampered.stdout + tampered.stderr
    await change(clinic, victim, draw_value=value)

    bad_month = await run("replay", "--month", "2026-13", ok=False)
    assert bad_month.returncode == 2
    assert "YYYY-MM" in bad_month.stderr

    keys_dir = install.data_dir / "keys"
    old = load_qa_secret(install.settings())
    too_early = await run("rotate-secret", "--from", "2026-09-10", ok=False)
    assert too_early.returncode == 1
    assert "choose a date after 2026-09-20" in too_early.stderr
    assert load_qa_secret(install.settings()) == old  # refused: the secret in use is untouched

    rotated = await run("rotate-secret", "--from", "2026-12-01")
    new = load_qa_secret(install.settings())
    assert new != old
    assert f"QA secret {new.key_id} draws consultations starting from 2026-12-01" in rotated.stdout
    kept = keys_dir / "qa-secrets" / old.key_id
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    for secret in (old, new):
        assert base64.b64encode(secret.key).decode() not in rotated.stdout + rotated.stderr
    listing = await run("rotations")
    assert f"from the beginning: QA secret {old.key_id} (held)" in listing.stdout
    assert f"from 2026-12-01: QA secret {new.key_id} (current)" in listing.stdout
    assert "every decision replays as stored" in (await run("replay", "--month", MONTH)).stdout

    kept.unlink()  # an admin who did not keep the old secret: the inspector can no longer replay its months
    lost = await run("replay", "--month", MONTH, ok=False)
    assert lost.returncode == 1
    assert f"DIFFERENT unknown_secret: consultation {made[0]}" in lost.stdout
