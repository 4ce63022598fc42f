"""The inspector's replay, pure (qa_audit.replay): an honest month replays clean, whatever its mix and however its
top-ups were spread over the month; each kind of tampering, a missing or wrong secret, a missing decision and a
physician-month below its floor show up, by id; rotations and the daily top-up's months (qa_audit.sampling)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from qa_audit import replay, sampling
from qa_audit.replay import Kind
from qa_audit.sampling import Facts, Reason, Rotation, SamplingPolicy
from server.keyring import qa_secret_id

OLD = b"the clinic's first QA secret...."
NEW = b"the clinic's second QA secret..."
OLD_ID, NEW_ID = qa_secret_id(OLD), qa_secret_id(NEW)
MONTH = "2026-09"
POLICY = SamplingPolicy()
START = dt.datetime(2026, 9, 1, 6, tzinfo=dt.UTC)
#: Nothing drawn: every sample of the month is the floor's (ceil of a tiny share: one per physician-month).
FLOOR_ONLY = SamplingPolicy(rate=Fraction(1, 10**18))


@dataclasses.dataclass
class Month:
    """A month as the sampler and the daily top-up would have stored it: decisions made in order of start, the
    top-up run at the given days (on what had been decided by then)."""

    decisions: dict[uuid.UUID, replay.StoredDecision]
    record: dict[uuid.UUID, replay.RecordEntry]
    keys: replay.Keys

    def replay(self, **overrides: object) -> replay.Report:
        values: dict[str, object] = {"keys": self.keys, "policy": POLICY, "closed": True, **overrides}
        return replay.replay_month(MONTH, list(self.decisions.values()), self.record, **values)  # type: ignore[arg-type]

    def change(self, consultation_id: uuid.UUID, **fields: object) -> None:
        self.decisions[consultation_id] = dataclasses.replace(self.decisions[consultation_id], **fields)  # type: ignore[arg-type]


def _facts(physician: int, number: int, **extra: object) -> Facts:
    values: dict[str, object] = {"call_seconds": 900.0, "physician_consultation_number": 100, **extra}
    consultation_id = uuid.UUID(int=(physician << 64) + number + 1)  # fixed: every run draws the same
    return Facts(consultation_id, uuid.UUID(int=physician), MONTH, **values)  # type: ignore[arg-type]


def history(counts: Sequence[int], *, top_up_days: Sequence[int] = (30,), rotations: Sequence[Rotation] = (),
            facts: Callable[[int, int], Facts] = _facts, policy: SamplingPolicy = POLICY) -> Month:
    """Each physician's consultations spread over the month (day 1 + n); the draw under the secret in force."""
    secrets = {OLD_ID: OLD, NEW_ID: NEW}
    current = rotations[-1].secret_id if rotations else OLD_ID
    entries = []
    for physician, count in enumerate(counts, start=1):
        for number in range(count):
            item = facts(physician, number)
            day = dt.date(2026, 9, 1 + (number * 29) // max(count, 1))
            entries.append((day, item))
    entries.sort(key=lambda pair: pair[0])
    decisions: dict[uuid.UUID, replay.StoredDecision] = {}
    record: dict[uuid.UUID, replay.RecordEntry] = {}
    top_ups = sorted(START.replace(day=day, hour=23) for day in top_up_days)
    for day, item in entries:
        for at in [t for t in top_ups if t.date() < day]:
            _top_up(decisions, at, policy)
            top_ups.remove(at)
        secret_id = sampling.secret_id_on(rotations, day, default=current)
        made = sampling.decide(item, secret=secrets[secret_id], policy=policy)
        decisions[item.consultation_id] = replay.StoredDecision(
            item.consultation_id, item.physician_id, MONTH, made.sampled, tuple(r.value for r in made.reasons),
            f"{made.value:016x}", made.policy_version, secret_id, START.replace(day=day.day, hour=12))
        record[item.consultation_id] = replay.RecordEntry(item, day)
    for at in top_ups:
        _top_up(decisions, at, policy)
    return Month(decisions, record, replay.Keys(secrets, rotations, current))


def _top_up(decisions: dict[uuid.UUID, replay.StoredDecision], at: dt.datetime, policy: SamplingPolicy) -> None:
    """What services.top_up_month does to the stored rows."""
    groups: dict[uuid.UUID, list[replay.StoredDecision]] = {}
    for decision in decisions.values():
        groups.setdefault(decision.physician_id, []).append(decision)
    for group in groups.values():
        candidates = [sampling.Candidate(d.consultation_id, int(d.draw_value, 16), d.sampled) for d in group]
        for consultation_id in sampling.top_up(candidates, policy.rate):
            old = decisions[consultation_id]
            decisions[consultation_id] = dataclasses.replace(old, sampled=True, topped_up_at=at,
                                                             reasons=(*old.reasons, Reason.floor.value))


def _kinds(report: replay.Report) -> list[tuple[Kind, uuid.UUID | None]]:
    return [(d.kind, d.consultation_id) for d in report.differences]


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=4),
       top_up_days=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=4, unique=True))
def test_an_honest_month_replays_clean_however_its_top_ups_were_spread(counts: list[int],
                                                                        top_up_days: list[int]) -> None:
    month = history(counts, top_up_days=sorted({*top_up_days, 30}))  # and the month's last top-up
    report = month.replay()
    assert report.ok, [d.line() for d in report.differences]
    assert report.decisions == sum(counts)
    for physician in report.physicians:  # the last top-up left every physician-month at its floor
        assert physician.met, physician


def test_an_early_top_up_stands_though_later_draws_would_have_met_the_floor() -> None:
    """Why the replay runs the top-ups in order: one on day 1 is not undone by later random draws."""
    month = history([30], top_up_days=(1, 30))
    early = [d for d in month.decisions.values() if d.topped_up_at is not None]
    assert early  # the first day's single consultation had to be topped up
    assert month.replay().ok


def test_a_tampered_draw_value_shows_up_by_consultation() -> None:
    month = history([20])
    victim = next(iter(month.decisions))
    month.change(victim, draw_value="0" * 16)
    assert (Kind.draw_value, victim) in _kinds(month.replay())


def test_a_flipped_sampled_flag_shows_up_and_may_leave_the_month_below_its_floor() -> None:
    month = history([20])
    sampled = next(d for d in month.decisions.values() if d.sampled)
    unsampled = next(d for d in month.decisions.values() if not d.sampled)
    month.change(sampled.consultation_id, sampled=False)
    month.change(unsampled.consultation_id, sampled=True)
    found = _kinds(month.replay())
    assert (Kind.sampled, sampled.consultation_id) in found
    assert (Kind.sampled, unsampled.consultation_id) in found


def test_a_deleted_decision_shows_up_as_undecided_and_the_floor_unmet() -> None:
    month = history([10], policy=FLOOR_ONLY)
    [floor_pick] = [d for d in month.decisions.values() if d.sampled]  # the one the top-up added
    assert floor_pick.reasons == ("floor",)
    del month.decisions[floor_pick.consultation_id]
    report = month.replay(policy=FLOOR_ONLY)
    assert (Kind.undecided, floor_pick.consultation_id) in _kinds(report)
    assert (Kind.below_floor, None) in _kinds(report)
    [physician] = report.physicians
    assert (physician.consultations, physician.sampled, physician.floor) == (10, 0, 1)


def test_while_the_month_is_open_undecided_and_below_floor_are_pending_not_differences() -> None:
    month = history([10])
    del month.decisions[next(iter(month.decisions))]
    report = month.replay(closed=False)
    assert {d.kind for d in report.pending} <= {Kind.undecided, Kind.below_floor}
    assert Kind.undecided in {d.kind for d in report.pending}
    assert report.ok


def test_replaying_under_another_secret_names_every_decision_unknown() -> None:
    month = history([15])
    stranger = b"an inspector's wrong QA secret.."
    report = month.replay(keys=replay.Keys({qa_secret_id(stranger): stranger}, (), qa_secret_id(stranger)))
    assert {kind for kind, _ in _kinds(report)} == {Kind.unknown_secret}
    assert len(report.differences) == 15


def test_another_key_under_the_secret_id_gives_other_draw_values() -> None:
    month = history([15])
    forged = replay.Keys({OLD_ID: b"not the secret that drew it....."}, (), OLD_ID)
    found = _kinds(month.replay(keys=forged))
    assert sum(1 for kind, _ in found if kind is Kind.draw_value) == 15


def test_a_rotation_mid_month_replays_clean_with_both_secrets() -> None:
    rotations = (Rotation(dt.date.min, OLD_ID), Rotation(dt.date(2026, 9, 15), NEW_ID))
    month = history([20, 20], rotations=rotations)
    used = {d.secret_id for d in month.decisions.values()}
    assert used == {OLD_ID, NEW_ID}
    assert month.replay().ok
    without_old = replay.Keys({NEW_ID: NEW}, rotations, NEW_ID)
    found = _kinds(month.replay(keys=without_old))
    early = {cid for cid, d in month.decisions.items() if d.secret_id == OLD_ID}
    assert {cid for kind, cid in found if kind is Kind.unknown_secret} == early


def test_a_draw_under_the_secret_not_in_force_that_day_shows_up() -> None:
    rotations = (Rotation(dt.date.min, OLD_ID), Rotation(dt.date(2026, 9, 15), NEW_ID))
    month = history([20], rotations=rotations)
    late = next(cid for cid, d in month.decisions.items() if d.secret_id == NEW_ID)
    month.change(late, secret_id=OLD_ID, draw_value=f"{sampling.draw_value(OLD, late):016x}")
    assert (Kind.wrong_secret, late) in _kinds(month.replay())


def test_targeted_reasons_are_recomputed_from_the_facts() -> None:
    def short_every_fifth(physician: int, number: int) -> Facts:
        return _facts(physician, number, call_seconds=60.0 if number % 5 == 0 else 900.0)

    month = history([20], facts=short_every_fifth)
    short = next(cid for cid, d in month.decisions.items() if Reason.short_call.value in d.reasons)
    long = next(cid for cid, d in month.decisions.items() if not d.sampled)
    assert month.replay().ok
    month.change(short, reasons=tuple(r for r in month.decisions[short].reasons if r != "short_call"))
    month.change(long, reasons=("complaint",), sampled=True)
    found = _kinds(month.replay())
    assert (Kind.reasons, short) in found
    assert (Kind.reasons, long) in found


def test_an_erased_recordings_reasons_are_taken_as_stored() -> None:
    def damaged(physician: int, number: int) -> Facts:
        return _facts(physician, number, recording_state="damaged" if number == 3 else "complete")

    month = history([10], facts=damaged)
    cid = next(cid for cid, d in month.decisions.items() if Reason.recording_damaged.value in d.reasons)
    entry = month.record[cid]
    # Erased years later: the record no longer says the recording was damaged, but the decision stands.
    month.record[cid] = replay.RecordEntry(dataclasses.replace(entry.facts, recording_state=None), entry.day,
                                           unknown=frozenset({Reason.recording_damaged, Reason.recording_partial}))
    assert month.replay().ok
    month.record[cid] = replay.RecordEntry(dataclasses.replace(entry.facts, recording_state=None), entry.day)
    assert (Kind.reasons, cid) in _kinds(month.replay())


def test_a_top_up_of_the_wrong_consultation_shows_up() -> None:
    month = history([10], policy=FLOOR_ONLY)
    [picked] = [d for d in month.decisions.values() if d.sampled]
    other = next(d for d in month.decisions.values() if not d.sampled)
    month.change(picked.consultation_id, sampled=False, reasons=(), topped_up_at=None)
    month.change(other.consultation_id, sampled=True, reasons=("floor",), topped_up_at=picked.topped_up_at)
    found = _kinds(month.replay(policy=FLOOR_ONLY))
    assert (Kind.top_up, picked.consultation_id) in found
    assert (Kind.top_up, other.consultation_id) in found


def test_unknown_rules_and_a_wrong_month_show_up() -> None:
    month = history([5])
    first, second = list(month.decisions)[:2]
    month.change(first, policy_version=99)
    month.change(second, month="2026-08")
    found = _kinds(month.replay())
    assert (Kind.unknown_rules, first) in found
    assert (Kind.month, second) in found


def test_a_report_names_ids_and_codes_only() -> None:
    month = history([10])
    victim = next(iter(month.decisions))
    month.change(victim, draw_value="f" * 16)
    [line] = [d.line() for d in month.replay().differences if d.kind is Kind.draw_value]
    assert str(victim) in line
    assert line.startswith("draw_value: consultation ")


def test_the_secret_in_force_is_the_latest_rotation_effective_that_day() -> None:
    rotations = [Rotation(dt.date(2026, 9, 15), "b"), Rotation(dt.date.min, "a"), Rotation(dt.date(2026, 10, 1), "c")]
    assert sampling.secret_id_on(rotations, dt.date(2026, 9, 14), default="x") == "a"
    assert sampling.secret_id_on(rotations, dt.date(2026, 9, 15), default="x") == "b"
    assert sampling.secret_id_on(rotations, dt.date(2027, 1, 1), default="x") == "c"
    assert sampling.secret_id_on([], dt.date(2026, 9, 15), default="x") == "x"
    assert sampling.secret_id_on([Rotation(dt.date(2026, 9, 15), "b")], dt.date(2026, 9, 1), default="x") == "x"


def test_the_daily_top_up_covers_the_previous_month_in_its_first_days() -> None:
    assert sampling.months_to_top_up(dt.date(2026, 10, 1)) == ["2026-09", "2026-10"]
    assert sampling.months_to_top_up(dt.date(2026, 10, 3)) == ["2026-09", "2026-10"]
    assert sampling.months_to_top_up(dt.date(2026, 10, 4)) == ["2026-10"]
    assert sampling.months_to_top_up(dt.date(2027, 1, 2)) == ["2026-12", "2027-01"]
    assert not sampling.month_closed("2026-09", dt.date(2026, 10, 3))
    assert sampling.month_closed("2026-09", dt.date(2026, 10, 4))
    assert sampling.month_days("2026-12") == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))


def test_the_floor_uses_every_completed_consultation_even_undecided_ones() -> None:
    month = history([9], policy=dataclasses.replace(POLICY, rate=Fraction(1, 10)))
    extra = _facts(1, 99)
    month.record[extra.consultation_id] = replay.RecordEntry(extra, dt.date(2026, 9, 30))
    report = month.replay()
    [physician] = report.physicians
    assert physician.consultations == 10
    assert (Kind.undecided, extra.consultation_id) in _kinds(report)


def test_a_reason_that_arrives_after_the_decision_counts_from_when_it_was_added() -> None:
    """A patient's complaint after the decision samples it then: the top-ups before did not count it."""
    month = history([10], policy=FLOOR_ONLY)
    [picked] = [d for d in month.decisions.values() if d.sampled]  # the top-up's, on day 30
    assert picked.topped_up_at is not None
    other = next(d for d in month.decisions.values() if not d.sampled)
    month.change(other.consultation_id, sampled=True, reasons=("complaint",))
    entry = month.record[other.consultation_id]
    after = picked.topped_up_at + dt.timedelta(days=1)
    month.record[other.consultation_id] = dataclasses.replace(entry, late=((Reason.complaint, after),))
    assert month.replay(policy=FLOOR_ONLY).ok

    before = picked.topped_up_at - dt.timedelta(days=1)  # had it come before, that top-up needed nothing
    month.record[other.consultation_id] = dataclasses.replace(entry, late=((Reason.complaint, before),))
    assert (Kind.top_up, picked.consultation_id) in _kinds(month.replay(policy=FLOOR_ONLY))

    month.change(other.consultation_id, sampled=False, reasons=())  # the complaint never reached the decision
    month.record[other.consultation_id] = dataclasses.replace(entry, late=((Reason.complaint, after),))
    found = _kinds(month.replay(policy=FLOOR_ONLY))
    assert (Kind.reasons, other.consultation_id) in found
    assert (Kind.sampled, other.consultation_id) in found
