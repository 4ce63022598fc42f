"""An inspector's replay of one month's sampling: recompute every decision from stored data and list what differs.

Pure: the caller (qa_audit.services.replay_month) loads the month's decisions, the record's facts and the
secrets; here they are compared, so every kind of difference is testable without a database.

What is recomputed, for each decision:
- the draw value: the HMAC of the consultation id under the secret the decision names (and whether that secret
  was the one in force on the consultation's start date, by the recorded rotations);
- its reasons: the draw against the rate, and the targeted rules on the record's facts as they stood when the
  decision was made (facts that are gone, such as an erased recording's state, are taken as stored), plus the
  reasons that arrive later and are added to a decision when they do (a patient's complaint or low rating, a
  diagnosis or prescription refused in a primary consultation's protocol), each counted from when it was added.
  A late reason with no such fact behind it is a difference like any other wrong reason;
- the floor's top-ups. These ran during the month, each on the decisions made by then, so they are replayed in
  the same order: at each stored top-up time the consultations decided by then, lowest draw values first. A
  from-scratch top-up over the whole month would disagree with a correct history (an early top-up is not undone
  when later random draws would have met the floor without it);
- whether each physician-month meets its floor, and whether every consultation completed in the month has a
  decision. While the month is open (its last top-up, in the first days of the next, is still to come) these two
  are pending, not differences.

Differences name consultations and physicians by id and reasons by code: a report carries no health data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from qa_audit.sampling import (
    SCALE,
    Candidate,
    Facts,
    Reason,
    Rotation,
    SamplingPolicy,
    draw_value,
    drawn,
    floor,
    secret_id_on,
    targeted_reasons,
    top_up,
)


class Kind(StrEnum):
    """A kind of difference (the names of secrets below are kinds, not secrets)."""

    # the secret the decision names is not held: it cannot be recomputed
    unknown_secret = "unknown_secret"  # noqa: S105  # a kind of difference, not a password
    # drawn under a secret that was not in force on the consultation's date
    wrong_secret = "wrong_secret"  # noqa: S105  # a kind of difference, not a password
    draw_value = "draw_value"  # the stored draw value is not the HMAC under the secret it names
    unknown_rules = "unknown_rules"  # made under a rule version this replay does not have
    month = "month"  # the decision's month is not the month the consultation started in
    reasons = "reasons"  # the draw and the targeted rules give other reasons than those stored
    top_up = "top_up"  # a top-up added other consultations than the lowest draw values it needed
    sampled = "sampled"  # the stored sampled flag disagrees with the reasons
    below_floor = "below_floor"  # a physician-month with fewer sampled than ceil(rate x consultations)
    undecided = "undecided"  # a consultation completed in the month without a decision


#: Pending rather than differences while the month is open.
_UNTIL_CLOSED = frozenset({Kind.below_floor, Kind.undecided})


@dataclass(frozen=True)
class StoredDecision:
    """A row of qa_sampling_decisions, as stored."""

    consultation_id: uuid.UUID
    physician_id: uuid.UUID
    month: str
    sampled: bool
    reasons: tuple[str, ...]
    draw_value: str  # hex, as stored
    policy_version: int
    secret_id: str
    decided_at: dt.datetime
    topped_up_at: dt.datetime | None = None


@dataclass(frozen=True)
class RecordEntry:
    """A consultation as the record shows it: its facts as of its decision (today, if it has none yet)."""

    facts: Facts
    day: dt.date  # its start date, in the clinic's zone
    done: bool = True  # completed or documented
    unknown: frozenset[Reason] = frozenset()  # targeted reasons whose facts are gone (an erased recording)
    # Targeted reasons that arose after the decision and are added to it then (a patient's feedback, a refused
    # protocol field), with when they were added: a top-up before that did not count them.
    late: tuple[tuple[Reason, dt.datetime], ...] = ()


@dataclass(frozen=True)
class Keys:
    """The secrets the replay holds, by id, and the recorded rotations that say which was in force when."""

    secrets: Mapping[str, bytes]
    rotations: Sequence[Rotation]
    current_id: str  # in force where no rotation is (none recorded yet)


@dataclass(frozen=True)
class Difference:
    kind: Kind
    physician_id: uuid.UUID
    consultation_id: uuid.UUID | None
    detail: str

    def line(self) -> str:
        """One line for the report: the kind, whose, what."""
        who = f"consultation {self.consultation_id}" if self.consultation_id else "physician-month"
        return f"{self.kind.value}: {who} (physician {self.physician_id}): {self.detail}"


@dataclass(frozen=True)
class PhysicianMonth:
    physician_id: uuid.UUID
    consultations: int
    sampled: int
    floor: int

    @property
    def met(self) -> bool:
        return self.sampled >= self.floor


@dataclass(frozen=True)
class Report:
    month: str
    decisions: int
    closed: bool
    physicians: tuple[PhysicianMonth, ...]
    differences: tuple[Difference, ...]
    pending: tuple[Difference, ...]  # what becomes a difference if still so when the month closes

    @property
    def ok(self) -> bool:
        return not self.differences


def _codes(reasons: Sequence[str] | frozenset[str]) -> str:
    return ", ".join(sorted(reasons)) or "none"


@dataclass
class _Replayed:
    """One decision recomputed: its draw value (for the top-ups), whether it was sampled when made, and from when a
    late reason sampled it."""

    value: int
    initial: bool
    late_at: dt.datetime | None = None

    def sampled_at(self, at: dt.datetime) -> bool:
        return self.initial or (self.late_at is not None and self.late_at <= at)


def _recompute(decision: StoredDecision, entry: RecordEntry | None, *, month: str, keys: Keys,
               policies: Mapping[int, SamplingPolicy], found: list[Difference]) -> _Replayed:
    cid, pid = decision.consultation_id, decision.physician_id

    def differ(kind: Kind, detail: str) -> None:
        found.append(Difference(kind, pid, cid, detail))

    stored_initial = frozenset(decision.reasons) - {Reason.floor.value}
    try:
        stored_value: int | None = int(decision.draw_value, 16)
    except ValueError:
        stored_value = None
    secret = keys.secrets.get(decision.secret_id)
    recomputed = None if secret is None else draw_value(secret, cid)
    if secret is None:
        differ(Kind.unknown_secret, f"drawn under secret {decision.secret_id}, which this replay does not hold")
    elif recomputed != stored_value:
        differ(Kind.draw_value, f"stored {decision.draw_value}, recomputed {recomputed:016x}")
    if entry is None:
        differ(Kind.month, f"decided for {decision.month}, but not a consultation of {month}")
        return _Replayed(_value(recomputed, stored_value), bool(stored_initial))
    if secret is not None:
        in_force = secret_id_on(keys.rotations, entry.day, default=keys.current_id)
        if in_force != decision.secret_id:
            differ(Kind.wrong_secret, f"drawn under secret {decision.secret_id}; secret {in_force} was in force "
                                      f"on {entry.day.isoformat()}")
    if entry.facts.month != decision.month:
        differ(Kind.month, f"decided for {decision.month}, started in {entry.facts.month}")
    policy = policies.get(decision.policy_version)
    if policy is None:
        differ(Kind.unknown_rules, f"decided under rules version {decision.policy_version}, which this replay "
                                   "does not have")
        return _Replayed(_value(recomputed, stored_value), bool(stored_initial))
    expected = {reason.value for reason in targeted_reasons(entry.facts, policy) if reason not in entry.unknown}
    expected |= {reason for reason in stored_initial if reason in entry.unknown}
    if recomputed is None:  # the draw cannot be checked without its secret: take it as stored
        expected |= stored_initial & {Reason.random.value}
    elif drawn(recomputed, policy.rate):
        expected.add(Reason.random.value)
    late = {reason.value: at for reason, at in entry.late if reason.value not in expected}
    if expected | set(late) != stored_initial:
        differ(Kind.reasons, f"stored {_codes(stored_initial)}; recomputed {_codes(frozenset(expected | set(late)))}")
    if (Reason.floor.value in decision.reasons) != (decision.topped_up_at is not None):
        differ(Kind.top_up, "the floor reason and the top-up time disagree")
    return _Replayed(_value(recomputed, stored_value), bool(expected), min(late.values(), default=None))


def _value(recomputed: int | None, stored: int | None) -> int:
    if recomputed is not None:
        return recomputed
    return stored if stored is not None else SCALE  # unreadable and unrecomputable: last in any top-up


def _replay_top_ups(group: Sequence[StoredDecision], replayed: Mapping[uuid.UUID, _Replayed],
                    policy: SamplingPolicy, found: list[Difference]) -> dict[uuid.UUID, bool]:
    """The physician-month's top-ups in the order they ran; whether each consultation ends up sampled."""
    topped: set[uuid.UUID] = set()
    for at in sorted({d.topped_up_at for d in group if d.topped_up_at is not None}):
        present = [d for d in group if d.decided_at <= at]
        chosen = set(top_up([Candidate(d.consultation_id, replayed[d.consultation_id].value,
                                       d.consultation_id in topped or replayed[d.consultation_id].sampled_at(at))
                             for d in present], policy.rate))
        actual = {d.consultation_id for d in group if d.topped_up_at == at}
        for d in group:
            if d.consultation_id in chosen - actual:
                found.append(Difference(Kind.top_up, d.physician_id, d.consultation_id,
                                        f"the top-up at {at.isoformat()} should have added it (lowest draw value)"))
            elif d.consultation_id in actual - chosen:
                found.append(Difference(Kind.top_up, d.physician_id, d.consultation_id,
                                        f"added by the top-up at {at.isoformat()}, which did not need it"))
        topped |= actual
    return {d.consultation_id: d.consultation_id in topped or replayed[d.consultation_id].initial
            or replayed[d.consultation_id].late_at is not None for d in group}


def replay_month(month: str, decisions: Sequence[StoredDecision], record: Mapping[uuid.UUID, RecordEntry], *,
                 keys: Keys, policy: SamplingPolicy, policies: Mapping[int, SamplingPolicy] | None = None,
                 closed: bool = True) -> Report:
    """Compare the month's stored decisions with their recomputation.

    `decisions`: those stored for `month`, and any stored for a consultation that started in it. `record`: every
    consultation those decisions name, and every consultation that started in the month. `policy`: the rules
    the floor is held to; `policies`: the rule versions decisions may name (default: `policy`'s alone).
    """
    policies = policies if policies is not None else {policy.version: policy}
    found: list[Difference] = []
    replayed = {d.consultation_id: _recompute(d, record.get(d.consultation_id), month=month, keys=keys,
                                              policies=policies, found=found) for d in decisions}
    groups: dict[uuid.UUID, list[StoredDecision]] = {}
    for decision in decisions:
        if decision.month == month:
            groups.setdefault(decision.physician_id, []).append(decision)
    completed: dict[uuid.UUID, set[uuid.UUID]] = {}
    decided = {d.consultation_id for d in decisions}
    for cid, entry in record.items():
        if not (entry.done and entry.facts.month == month):
            continue
        completed.setdefault(entry.facts.physician_id, set()).add(cid)
        if cid not in decided:
            found.append(Difference(Kind.undecided, entry.facts.physician_id, cid, "completed without a decision"))
    physicians = []
    for physician_id in sorted(set(groups) | set(completed), key=str):
        group = groups.get(physician_id, [])
        expected = _replay_top_ups(group, replayed, policy, found)
        for d in group:
            if d.sampled != expected[d.consultation_id]:
                found.append(Difference(Kind.sampled, physician_id, d.consultation_id,
                                        f"stored sampled={d.sampled}; its reasons say {expected[d.consultation_id]}"))
        count = len(completed.get(physician_id, set()) | {d.consultation_id for d in group})
        summary = PhysicianMonth(physician_id, count, sum(1 for d in group if d.sampled), floor(policy.rate, count))
        physicians.append(summary)
        if not summary.met:
            found.append(Difference(Kind.below_floor, physician_id, None,
                                    f"{summary.sampled} of {count} sampled; the floor is {summary.floor}"))
    differences = tuple(d for d in found if closed or d.kind not in _UNTIL_CLOSED)
    pending = tuple(d for d in found if not closed and d.kind in _UNTIL_CLOSED)
    return Report(month, len(decisions), closed, tuple(physicians), differences, pending)
