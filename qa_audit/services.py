"""Sampling completed consultations for the QA audit: the facts gathered, the decision made once, the floor met.

The decisions themselves are qa_audit.sampling's (pure). Here: what a consultation's facts are, storing exactly
one decision per consultation even when two sampling runs race, and topping up a physician-month to its floor;
the record of QA secret rotations, and loading a month for an inspector's replay (qa_audit.replay compares).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from fractions import Fraction
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from media.recording.models import Recording, RecordingState
from media.recording.services import CLEAN_STOPS
from qa_audit import feedback, late_reasons, replay, sampling
from qa_audit.models import SamplingDecision, SecretRotation
from server.audit import services as audit
from server.audit.models import AuditEntry
from server.keyring import KeyConfigurationError, QaSecret, QaSecrets
from server.scheduling.models import Consultation, ConsultationStatus
from server.settings import Settings

DONE = (ConsultationStatus.completed, ConsultationStatus.documented)
#: The worst recording state wins: a consultation with a damaged recording is sampled for it.
_RECORDING_ORDER = {"damaged": 0, "partial": 1, "complete": 2}
_RECORDING_REASONS = frozenset({sampling.Reason.recording_damaged, sampling.Reason.recording_partial})
#: A recording is finalised a little after the call; the decision waits for it (so a damaged recording is sampled
#: for it), but not for ever: a recording stuck unfinalised this long after the call is decided without.
RECORDING_SETTLE = dt.timedelta(hours=1)


def policy_from(settings: Settings) -> sampling.SamplingPolicy:
    return sampling.SamplingPolicy(rate=Fraction(str(settings.qa_sampling_rate)),
                                   min_call_seconds=settings.qa_min_call_seconds,
                                   first_consultations=settings.qa_first_consultations,
                                   low_rating=settings.qa_low_rating)


def month_of(consultation: Consultation, zone: ZoneInfo) -> str:
    return consultation.starts_at.astimezone(zone).strftime("%Y-%m")


async def facts_for(session: AsyncSession, consultation: Consultation, *, zone: ZoneInfo,
                    as_of: dt.datetime | None = None) -> sampling.Facts:
    """What the targeted rules read, from the record: the call's length, interruptions, the recording's state,
    refused primary-consultation fields, the patient's feedback, and how many consultations the physician has
    completed before. With
    `as_of`, as the record stood then (what the decision made then saw): a replay recomputes the same facts."""
    return (await _facts(session, consultation, zone=zone, as_of=as_of))[0]


async def _facts(session: AsyncSession, consultation: Consultation, *, zone: ZoneInfo,
                 as_of: dt.datetime | None) -> tuple[sampling.Facts, frozenset[sampling.Reason]]:
    """The facts, and the recording reasons no longer recomputable (a recording final by `as_of`, erased since)."""
    logged = select(AuditEntry.action).where(AuditEntry.object_type == "consultation",
                                             AuditEntry.object_id == str(consultation.id))
    if as_of is not None:
        logged = logged.where(AuditEntry.at <= as_of)
    actions = set((await session.scalars(logged)).all())
    recordings = (await session.execute(select(Recording.state, Recording.finalised_at, Recording.stop_reason,
                                               Recording.stopped_at).where(
        Recording.consultation_id == consultation.id))).all()
    # Final by then: a recording still being written or finalised when the decision was made did not count.
    final = [row.state.value for row in recordings
             if as_of is None or (row.finalised_at is not None and row.finalised_at <= as_of)]
    # A technical failure: a recording stopped by something other than the call (its media node died, or
    # never came back), by then.
    technical = any(row.stop_reason is not None and row.stop_reason not in CLEAN_STOPS
                    and (as_of is None or (row.stopped_at is not None and row.stopped_at <= as_of))
                    for row in recordings)
    worst = min((state for state in final if state in _RECORDING_ORDER),
                key=lambda value: _RECORDING_ORDER[value], default=None)
    unknown = _RECORDING_REASONS if RecordingState.erased.value in final else frozenset()
    earlier = await session.scalar(select(func.count()).select_from(Consultation).where(
        Consultation.physician_id == consultation.physician_id, Consultation.status.in_(DONE),
        Consultation.starts_at < consultation.starts_at)) or 0
    complaint, rating = await feedback.feedback_facts(session, consultation.id, as_of=as_of)
    seconds = None
    if consultation.admitted_at is not None and consultation.ended_at is not None:
        seconds = (consultation.ended_at - consultation.admitted_at).total_seconds()
    facts = sampling.Facts(
        consultation_id=consultation.id, physician_id=consultation.physician_id,
        month=month_of(consultation, zone), complaint=complaint, rating=rating, call_seconds=seconds,
        interrupted="consultation.interrupted" in actions, technical_failure=technical, recording_state=worst,
        forbidden_fields_refused="protocol.forbidden_field_refused" in actions,
        physician_consultation_number=earlier + 1)
    return facts, unknown


async def decide_once(session: AsyncSession, consultation: Consultation, *, secret: QaSecret,
                      policy: sampling.SamplingPolicy, zone: ZoneInfo, now: dt.datetime) -> SamplingDecision:
    """The consultation's one decision: made now, or the one another run made first."""
    existing = await _decision(session, consultation.id)
    if existing is not None:
        return existing
    facts = await facts_for(session, consultation, zone=zone, as_of=now)
    decision = sampling.decide(facts, secret=secret.key, policy=policy)
    row = SamplingDecision(consultation_id=consultation.id, physician_id=consultation.physician_id,
                           month=month_of(consultation, zone), sampled=decision.sampled,
                           reasons=[reason.value for reason in decision.reasons],
                           draw_value=f"{decision.value:016x}", policy_version=decision.policy_version,
                           secret_id=secret.key_id, decided_at=now)
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another run decided it between our look and our insert: theirs stands
        found = await _decision(session, consultation.id)
        if found is None:
            raise
        return found
    await audit.record(session, ctx=audit.SYSTEM, action="qa.sampling_decided", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id,
                       detail={"sampled": decision.sampled, "reasons": row.reasons}, now=now)
    return row


async def _decision(session: AsyncSession, consultation_id: uuid.UUID) -> SamplingDecision | None:
    return (await session.scalars(select(SamplingDecision).where(
        SamplingDecision.consultation_id == consultation_id))).one_or_none()


async def sample_pending(session: AsyncSession, *, secrets: QaSecrets, policy: sampling.SamplingPolicy,
                         zone: ZoneInfo, now: dt.datetime, limit: int = 500) -> int:
    """Decide every completed consultation that has no decision yet (oldest first), each under the secret in force
    on its start date; how many were decided. Refuses (KeyConfigurationError) while the configured secret is not
    the one recorded last: a secret changed without `qa rotate-secret` would draw days it was not meant to. Then
    the facts that arose after a decision are added to it: feedback given while it was being made
    (qa_audit.feedback), and protocol fields refused since (qa_audit.late_reasons)."""
    unsettled = exists().where(Recording.consultation_id == Consultation.id,
                               Recording.state.in_((RecordingState.recording, RecordingState.stopped)))
    waiting = (await session.scalars(
        select(Consultation).outerjoin(SamplingDecision, SamplingDecision.consultation_id == Consultation.id)
        .where(Consultation.status.in_(DONE), SamplingDecision.id.is_(None),
               or_(~unsettled, Consultation.ended_at.is_(None), Consultation.ended_at < now - RECORDING_SETTLE))
        .order_by(Consultation.starts_at).limit(limit))).all()
    schedule: list[sampling.Rotation] = []
    if waiting:
        schedule = await rotation_schedule(session)
        await _check_current_secret(session, secrets, schedule)
    for consultation in waiting:
        day = consultation.starts_at.astimezone(zone).date()
        secret_id = sampling.secret_id_on(schedule, day, default=secrets.current.key_id)
        secret = secrets.get(secret_id)
        if secret is None:
            raise KeyConfigurationError(
                f"the QA secret {secret_id}, in force on {day.isoformat()}, is not held: put it back in "
                "<keys>/qa-secrets/ (docs/qa.md, rotating the secret)")
        await decide_once(session, consultation, secret=secret, policy=policy, zone=zone, now=now)
    await feedback.apply_pending_feedback(session, policy=policy, now=now)
    await late_reasons.apply_pending_refusals(session, policy=policy, now=now)
    return len(waiting)


async def _check_current_secret(session: AsyncSession, secrets: QaSecrets,
                                schedule: Sequence[sampling.Rotation]) -> None:
    current = secrets.current.key_id
    if schedule:
        last = schedule[-1]
        if last.secret_id != current:
            raise KeyConfigurationError(
                f"the configured QA secret ({current}) is not the one recorded last ({last.secret_id}, from "
                f"{last.effective_from.isoformat()}): record the change with `python -m server qa rotate-secret "
                "--from YYYY-MM-DD`, or configure the recorded secret again")
        return
    other = await session.scalar(select(SamplingDecision.secret_id).where(SamplingDecision.secret_id != current)
                                 .limit(1))
    if other is not None:
        raise KeyConfigurationError(
            f"decisions were drawn under QA secret {other}, but the configured one is {current} and no rotation "
            "is recorded: record it with `python -m server qa rotate-secret --from YYYY-MM-DD` (keeping the old "
            "secret in <keys>/qa-secrets/), or configure the old secret again")


async def top_up_month(session: AsyncSession, *, month: str, policy: sampling.SamplingPolicy,
                       now: dt.datetime) -> list[uuid.UUID]:
    """Bring every physician's `month` to its floor, lowest draw values first; the consultations added."""
    rows = (await session.scalars(select(SamplingDecision).where(SamplingDecision.month == month)
                                  .with_for_update())).all()
    groups: dict[uuid.UUID, list[SamplingDecision]] = {}
    for row in rows:
        groups.setdefault(row.physician_id, []).append(row)
    added: list[uuid.UUID] = []
    for group in groups.values():
        candidates = [sampling.Candidate(row.consultation_id, int(row.draw_value, 16), row.sampled) for row in group]
        chosen = set(sampling.top_up(candidates, policy.rate))
        for row in group:
            if row.consultation_id in chosen:
                row.sampled, row.topped_up_at = True, now
                row.reasons = [*row.reasons, sampling.Reason.floor.value]
                added.append(row.consultation_id)
                await audit.record(session, ctx=audit.SYSTEM, action="qa.sampling_topped_up",
                                   object_type="consultation", object_id=row.consultation_id, now=now)
    return added


async def top_up_due(session: AsyncSession, *, policy: sampling.SamplingPolicy, zone: ZoneInfo,
                     now: dt.datetime) -> dict[str, list[uuid.UUID]]:
    """The daily top-up: this month, and in the first days of a month the previous one too, so consultations
    completed late on its last day and decided after midnight still count towards its floor."""
    today = now.astimezone(zone).date()
    return {month: await top_up_month(session, month=month, policy=policy, now=now)
            for month in sampling.months_to_top_up(today)}


# --- Rotating the QA secret --------------------------------------------------------------------------------------


class RotationRefused(Exception):
    """A rotation that would break the record: said in one line, for the admin running the command."""


async def rotation_schedule(session: AsyncSession) -> list[sampling.Rotation]:
    """The recorded rotations, oldest first: which secret draws which days."""
    rows = (await session.scalars(select(SecretRotation).order_by(SecretRotation.effective_from))).all()
    return [sampling.Rotation(row.effective_from, row.secret_id) for row in rows]


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


async def _outgoing_secret_id(session: AsyncSession, schedule: Sequence[sampling.Rotation]) -> str | None:
    """The secret drawing now: the one recorded last, or (before any rotation) the one every decision names."""
    if schedule:
        return schedule[-1].secret_id
    used = (await session.scalars(select(SamplingDecision.secret_id).distinct().limit(2))).all()
    if len(used) > 1:
        raise RotationRefused("decisions name more than one QA secret and no rotation is recorded: "
                              "run `python -m server qa replay` on the months concerned first")
    return used[0] if used else None


async def record_rotation(session: AsyncSession, *, new: QaSecret, held: QaSecrets, effective_from: dt.date,
                          zone: ZoneInfo, ctx: audit.AuditContext, now: dt.datetime,
                          replacing: str | None = None) -> list[SecretRotation]:
    """Record that `new` draws consultations starting on or after `effective_from` (the clinic's zone); the rows
    added. The first rotation also records the outgoing secret (the one the decisions name, or else `replacing`:
    the secret the caller is replacing, when it knows it), in force since the beginning, so the days before keep
    their secret. Refused: a date on or before consultations already decided (they were drawn under the
    outgoing secret), a date not after the last rotation's, a secret already recorded, or an outgoing secret
    this keyring does not hold (it must be kept, or its months could no longer be replayed)."""
    schedule = await rotation_schedule(session)
    if any(rotation.secret_id == new.key_id for rotation in schedule):
        raise RotationRefused(f"the QA secret {new.key_id} is already recorded; configure a new one to rotate to")
    if schedule and effective_from <= schedule[-1].effective_from:
        raise RotationRefused(f"a rotation from {schedule[-1].effective_from.isoformat()} is recorded already; "
                              "the new one must start later")
    decided_since = (await session.execute(
        select(func.count(), func.max(Consultation.starts_at)).select_from(SamplingDecision)
        .join(Consultation, Consultation.id == SamplingDecision.consultation_id)
        .where(Consultation.starts_at >= _midnight(effective_from, zone)))).one()
    if decided_since[0]:
        latest = decided_since[1].astimezone(zone).date()
        raise RotationRefused(
            f"{decided_since[0]} consultations starting on or after {effective_from.isoformat()} are decided already "
            f"under the outgoing secret; choose a date after {latest.isoformat()}")
    outgoing = await _outgoing_secret_id(session, schedule) or replacing
    if outgoing is not None and held.get(outgoing) is None:
        raise RotationRefused(f"the outgoing QA secret {outgoing} is not held: keep it in <keys>/qa-secrets/ first, "
                              "or the months it drew can no longer be replayed")
    rows = []
    if not schedule and outgoing is not None:
        rows.append(SecretRotation(secret_id=outgoing, effective_from=dt.date.min, recorded_at=now))
    rows.append(SecretRotation(secret_id=new.key_id, effective_from=effective_from, recorded_at=now))
    session.add_all(rows)
    await session.flush()
    await audit.record(session, ctx=ctx, action="qa.secret_rotated", object_type="qa_secret", object_id=new.key_id,
                       detail={"effective_from": effective_from.isoformat(), "outgoing": outgoing}, now=now)
    return rows


# --- The inspector's replay --------------------------------------------------------------------------------------


async def replay_month(session: AsyncSession, *, month: str, secrets: QaSecrets, policy: sampling.SamplingPolicy,
                       zone: ZoneInfo, ctx: audit.AuditContext, now: dt.datetime) -> replay.Report:
    """Load the month's decisions and its consultations' facts (as of each decision), and compare
    (qa_audit.replay). The replay is an audit entry: it reads the record's facts of every consultation."""
    first, following = sampling.month_days(month)
    started_in_month = Consultation.starts_at.between(_midnight(first, zone),
                                                      _midnight(following, zone) - dt.timedelta(microseconds=1))
    decided = (await session.execute(
        select(SamplingDecision, Consultation).join(Consultation, Consultation.id == SamplingDecision.consultation_id)
        .where(or_(SamplingDecision.month == month, started_in_month)))).all()
    undecided = (await session.scalars(
        select(Consultation).outerjoin(SamplingDecision, SamplingDecision.consultation_id == Consultation.id)
        .where(started_in_month, Consultation.status.in_(DONE), SamplingDecision.id.is_(None)))).all()
    record: dict[uuid.UUID, replay.RecordEntry] = {}
    stored = []
    for row, consultation in decided:
        stored.append(replay.StoredDecision(
            row.consultation_id, row.physician_id, row.month, row.sampled, tuple(row.reasons), row.draw_value,
            row.policy_version, row.secret_id, row.decided_at, row.topped_up_at))
        record[consultation.id] = await _entry(session, consultation, zone=zone, as_of=row.decided_at, policy=policy)
    for consultation in undecided:
        record[consultation.id] = await _entry(session, consultation, zone=zone, as_of=None, policy=policy)
    keys = replay.Keys(secrets.by_id(), await rotation_schedule(session), secrets.current.key_id)
    report = replay.replay_month(month, stored, record, keys=keys, policy=policy,
                                 closed=sampling.month_closed(month, now.astimezone(zone).date()))
    await audit.record(session, ctx=ctx, action="qa.sampling_replayed", object_type="qa_month", object_id=month,
                       detail={"decisions": report.decisions, "differences": len(report.differences)}, now=now)
    return report


async def _entry(session: AsyncSession, consultation: Consultation, *, zone: ZoneInfo, as_of: dt.datetime | None,
                 policy: sampling.SamplingPolicy) -> replay.RecordEntry:
    facts, unknown = await _facts(session, consultation, zone=zone, as_of=as_of)
    return replay.RecordEntry(facts, consultation.starts_at.astimezone(zone).date(), consultation.status in DONE,
                              unknown, await _late_reasons(session, consultation, as_of=as_of, policy=policy))


async def _late_reasons(session: AsyncSession, consultation: Consultation, *, as_of: dt.datetime | None,
                        policy: sampling.SamplingPolicy) -> tuple[tuple[sampling.Reason, dt.datetime], ...]:
    """The reasons that facts arising after the decision add to it (feedback given, protocol fields refused), and
    when each was added (qa_audit.late_reasons.when_added: the fact's time if it never was, and the replay then
    finds it missing)."""
    if as_of is None:
        return ()
    arisen: list[tuple[sampling.Reason, dt.datetime]] = []
    given = await feedback.feedback_for(session, consultation.id)
    if given is not None and given.created_at > as_of:
        arisen += [(reason, given.created_at) for reason in feedback.feedback_reasons(
            complaint=given.complaint is not None, rating=given.rating, policy=policy)]
    refused = await late_reasons.refused_after(session, consultation.id, as_of)
    if refused is not None:
        arisen += [(reason, refused) for reason in late_reasons.refusal_reasons(policy)]
    return await late_reasons.when_added(session, consultation.id, arisen)
