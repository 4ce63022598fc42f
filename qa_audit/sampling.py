"""Which consultations the quality audit reviews: pure decisions, no I/O, no clock (issue 7).

**The random draw.** A consultation is drawn when the HMAC-SHA256 of its id under the clinic's QA secret, read as
a number in [0, 1), falls below the rate. A physician cannot predict it without the secret; an inspector holding
the secret (and the stored rule version) can recompute every decision.

**The floor.** For each physician and calendar month at least ceil(rate x consultations) are sampled. The top-up
adds the not-yet-sampled consultations with the lowest draw values, so it is reproducible too.

**Targeted rules** add samples with their own reason, whatever the draw: a complaint or low rating, a red flag
at check-in, a call shorter than the minimum, an interrupted or failed call, a damaged or partial recording, a
primary consultation where a diagnosis or prescription was refused, a physician's first consultations.

The rule set is versioned (`SamplingPolicy.version`): a decision stores the version it was made under, and a
change of rules applies from the version on.

**Secrets rotate from a date on.** Each consultation is drawn under the secret in force on its start date (the
latest rotation effective by then); the decision stores that secret's id, so a replay knows which key to use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction

#: Draw values are the first 8 bytes of the HMAC: integers in [0, 2**64).
SCALE = 1 << 64


class Reason(StrEnum):
    random = "random"
    floor = "floor"  # the top-up to the monthly minimum
    complaint = "complaint"
    low_rating = "low_rating"
    red_flag = "red_flag"
    short_call = "short_call"
    interrupted = "interrupted"
    technical_failure = "technical_failure"
    recording_damaged = "recording_damaged"
    recording_partial = "recording_partial"
    forbidden_fields = "forbidden_fields"  # a diagnosis or prescription tried in a primary consultation
    new_physician = "new_physician"


#: The reasons that are rules about the consultation (all but the draw and its top-up).
TARGETED: frozenset[Reason] = frozenset(Reason) - {Reason.random, Reason.floor}


@dataclass(frozen=True)
class SamplingPolicy:
    """The clinic's rules (from settings), versioned as a whole."""

    version: int = 1
    rate: Fraction = Fraction(1, 10)
    low_rating: int = 2  # a patient's rating (1-5) at or below this is sampled
    min_call_seconds: int = 180  # a call shorter than this is sampled
    first_consultations: int = 5  # a physician's first N consultations are all sampled
    targeted: frozenset[Reason] = field(default_factory=lambda: frozenset(TARGETED))

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ValueError("the sampling rate is a share in (0, 1]")


@dataclass(frozen=True)
class Facts:
    """What is known of a consultation once it is completed; every targeted rule reads these and nothing else."""

    consultation_id: uuid.UUID
    physician_id: uuid.UUID
    month: str  # "YYYY-MM" in the clinic's zone
    complaint: bool = False
    rating: int | None = None
    red_flag_at_checkin: bool = False
    call_seconds: float | None = None  # None: no call took place
    interrupted: bool = False
    technical_failure: bool = False
    recording_state: str | None = None  # complete, partial, damaged; None: not recorded
    forbidden_fields_refused: bool = False
    physician_consultation_number: int = 1  # 1 for the physician's first consultation here


@dataclass(frozen=True)
class Decision:
    consultation_id: uuid.UUID
    sampled: bool
    reasons: tuple[Reason, ...]
    value: int  # the draw value: what the top-up orders by and an inspector recomputes
    policy_version: int


def draw_value(secret: bytes, consultation_id: uuid.UUID) -> int:
    """The consultation's place in the draw, in [0, 2**64): unpredictable without the secret, fixed with it."""
    return int.from_bytes(hmac.new(secret, consultation_id.bytes, hashlib.sha256).digest()[:8], "big")


def drawn(value: int, rate: Fraction) -> bool:
    """Below the rate's share of the range (exact: no floating point at the boundary)."""
    return value * rate.denominator < rate.numerator * SCALE


def targeted_reasons(facts: Facts, policy: SamplingPolicy) -> tuple[Reason, ...]:
    found = []
    if facts.complaint:
        found.append(Reason.complaint)
    if facts.rating is not None and facts.rating <= policy.low_rating:
        found.append(Reason.low_rating)
    if facts.red_flag_at_checkin:
        found.append(Reason.red_flag)
    if facts.call_seconds is not None and facts.call_seconds < policy.min_call_seconds:
        found.append(Reason.short_call)
    if facts.interrupted:
        found.append(Reason.interrupted)
    if facts.technical_failure:
        found.append(Reason.technical_failure)
    if facts.recording_state == "damaged":
        found.append(Reason.recording_damaged)
    if facts.recording_state == "partial":
        found.append(Reason.recording_partial)
    if facts.forbidden_fields_refused:
        found.append(Reason.forbidden_fields)
    if facts.physician_consultation_number <= policy.first_consultations:
        found.append(Reason.new_physician)
    return tuple(reason for reason in found if reason in policy.targeted)


def decide(facts: Facts, *, secret: bytes, policy: SamplingPolicy) -> Decision:
    """The one decision a completed consultation gets (the floor's top-up may add it later)."""
    value = draw_value(secret, facts.consultation_id)
    reasons = ((Reason.random,) if drawn(value, policy.rate) else ()) + targeted_reasons(facts, policy)
    return Decision(facts.consultation_id, bool(reasons), reasons, value, policy.version)


def floor(rate: Fraction, consultations: int) -> int:
    """The fewest a physician-month must have sampled: ceil(rate x consultations), exactly."""
    return math.ceil(rate * consultations)


@dataclass(frozen=True)
class Candidate:
    consultation_id: uuid.UUID
    value: int
    sampled: bool


def top_up(candidates: Sequence[Candidate], rate: Fraction) -> list[uuid.UUID]:
    """For one physician-month: the not-yet-sampled consultations to add, lowest draw values first, until the
    floor is met (none if it is)."""
    missing = floor(rate, len(candidates)) - sum(1 for c in candidates if c.sampled)
    if missing <= 0:
        return []
    waiting = sorted((c for c in candidates if not c.sampled), key=lambda c: (c.value, c.consultation_id.bytes))
    return [c.consultation_id for c in waiting[:missing]]


def by_physician_month(facts: Iterable[Facts]) -> dict[tuple[uuid.UUID, str], list[Facts]]:
    groups: dict[tuple[uuid.UUID, str], list[Facts]] = {}
    for item in facts:
        groups.setdefault((item.physician_id, item.month), []).append(item)
    return groups


def replay(facts: Sequence[Facts], *, secret: bytes, policy: SamplingPolicy) -> dict[uuid.UUID, tuple[Reason, ...]]:
    """Every consultation's reasons as the draw, the targeted rules and the top-up give them from scratch: what
    `qa replay` compares the stored decisions with."""
    decisions = {item.consultation_id: decide(item, secret=secret, policy=policy) for item in facts}
    reasons = {cid: decision.reasons for cid, decision in decisions.items()}
    for group in by_physician_month(facts).values():
        candidates = [Candidate(item.consultation_id, decisions[item.consultation_id].value,
                                bool(reasons[item.consultation_id])) for item in group]
        for consultation_id in top_up(candidates, policy.rate):
            reasons[consultation_id] = (Reason.floor,)
    return reasons


@dataclass(frozen=True)
class Rotation:
    """From `effective_from` on (a consultation's start date, in the clinic's zone) the draw uses `secret_id`."""

    effective_from: dt.date
    secret_id: str


def secret_id_on(rotations: Iterable[Rotation], day: dt.date, *, default: str) -> str:
    """The secret in force on `day`: the latest rotation effective by then; `default` (the current secret) when
    none is, as before the first rotation is recorded."""
    in_force = [rotation for rotation in rotations if rotation.effective_from <= day]
    return max(in_force, key=lambda rotation: rotation.effective_from).secret_id if in_force else default


#: Consultations completed late on a month's last day are decided in the first minutes of the next; the daily
#: top-up keeps topping the previous month up for these first days, so its floor holds once all are decided.
TOP_UP_GRACE_DAYS = 3


def month_days(month: str) -> tuple[dt.date, dt.date]:
    """The month's first day and the next month's first day, from "YYYY-MM" (ValueError if it is not one)."""
    first = dt.datetime.strptime(month, "%Y-%m").date()  # noqa: DTZ007  # a calendar date, no time or zone in it
    return first, (first + dt.timedelta(days=32)).replace(day=1)


def months_to_top_up(today: dt.date, *, grace_days: int = TOP_UP_GRACE_DAYS) -> list[str]:
    """The months the daily top-up brings to their floor on `today` (the clinic's date): this one, and during
    the first `grace_days` days the previous one too."""
    current = today.strftime("%Y-%m")
    if today.day > grace_days:
        return [current]
    return [(today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m"), current]


def month_closed(month: str, today: dt.date, *, grace_days: int = TOP_UP_GRACE_DAYS) -> bool:
    """Whether the month's sampling is final on `today`: its last top-up (in the grace days) is behind it."""
    return today >= month_days(month)[1] + dt.timedelta(days=grace_days)
