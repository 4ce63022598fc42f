"""QA sampling's pure rules: the HMAC draw, the monthly floor and its top-up, the targeted rules (issue 7)."""

from __future__ import annotations

import math
import uuid
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa_audit.sampling import (
    SCALE,
    Candidate,
    Facts,
    Reason,
    SamplingPolicy,
    by_physician_month,
    decide,
    draw_value,
    drawn,
    floor,
    replay,
    targeted_reasons,
    top_up,
)

SECRET = b"clinic qa secret, 32 bytes long!"
POLICY = SamplingPolicy(first_consultations=0)  # the draw and the floor alone unless a test says otherwise


def _ids(seed: int, count: int) -> list[uuid.UUID]:
    return [uuid.uuid5(uuid.UUID(int=seed), str(n)) for n in range(count)]


month_mix = st.lists(  # (physician, month, consultations) for a clinic's months
    st.tuples(st.integers(0, 5), st.sampled_from(["2026-09", "2026-10", "2026-11"]), st.integers(0, 60)),
    min_size=1, max_size=12, unique_by=lambda item: (item[0], item[1]))


def _facts(mix: list[tuple[int, str, int]]) -> list[Facts]:
    facts = []
    for physician, month, count in mix:
        physician_id = uuid.UUID(int=physician + 1)
        facts += [Facts(consultation_id, physician_id, month, physician_consultation_number=100)
                  for consultation_id in _ids(int(month.replace("-", "")) * 10 + physician, count)]
    return facts


@settings(max_examples=200, deadline=None)
@given(mix=month_mix, rate=st.sampled_from([Fraction(1, 10), Fraction(1, 20), Fraction(3, 10)]))
def test_every_physician_month_has_at_least_its_share_sampled(mix: list[tuple[int, str, int]],
                                                              rate: Fraction) -> None:
    facts = _facts(mix)
    policy = SamplingPolicy(rate=rate, first_consultations=0)
    reasons = replay(facts, secret=SECRET, policy=policy)
    for group in by_physician_month(facts).values():
        sampled = sum(1 for item in group if reasons[item.consultation_id])
        assert sampled >= math.ceil(rate * len(group))


@settings(max_examples=100, deadline=None)
@given(mix=month_mix)
def test_the_draw_is_reproducible_from_the_stored_data_and_another_secret_gives_another(
        mix: list[tuple[int, str, int]]) -> None:
    facts = _facts(mix)
    first = replay(facts, secret=SECRET, policy=POLICY)
    assert replay(list(reversed(facts)), secret=SECRET, policy=POLICY) == first  # order does not matter
    values = [draw_value(SECRET, item.consultation_id) for item in facts]
    others = [draw_value(b"another secret", item.consultation_id) for item in facts]
    if len(facts) >= 2:
        assert values != others  # a 64-bit value each: equal lists would take a collision per consultation


def test_the_random_draw_samples_about_the_rate() -> None:
    ids = _ids(7, 20_000)
    share = sum(drawn(draw_value(SECRET, consultation_id), Fraction(1, 10)) for consultation_id in ids) / len(ids)
    assert 0.09 < share < 0.11


def test_drawn_is_exact_at_the_boundary() -> None:
    rate = Fraction(1, 10)
    boundary = SCALE // 10  # 2**64 / 10 is not a whole number: the first value not drawn is ceil(2**64 / 10)
    assert drawn(boundary, rate)
    assert not drawn(boundary + 1, rate)
    assert drawn(0, rate)
    assert drawn(SCALE - 1, Fraction(1))


def test_floor_is_exact_ceil() -> None:
    assert [floor(Fraction(1, 10), n) for n in (0, 1, 9, 10, 11, 20, 21)] == [0, 1, 1, 1, 2, 2, 3]


def test_top_up_takes_the_lowest_values_until_the_floor() -> None:
    ids = _ids(3, 25)
    candidates = [Candidate(cid, value, sampled=(index == 0)) for index, (cid, value) in
                  enumerate(zip(ids, [50, *range(100, 124)], strict=True))]
    added = top_up(candidates, Fraction(1, 10))  # floor 3, one sampled: two more, the lowest values
    assert added == [ids[1], ids[2]]
    assert top_up([*candidates[:1]], Fraction(1, 10)) == []  # one of one sampled: the floor is met


@pytest.mark.parametrize(("facts", "reason"), [
    ({"complaint": True}, Reason.complaint),
    ({"rating": 2}, Reason.low_rating),
    ({"red_flag_at_checkin": True}, Reason.red_flag),
    ({"call_seconds": 100.0}, Reason.short_call),
    ({"interrupted": True}, Reason.interrupted),
    ({"technical_failure": True}, Reason.technical_failure),
    ({"recording_state": "damaged"}, Reason.recording_damaged),
    ({"recording_state": "partial"}, Reason.recording_partial),
    ({"forbidden_fields_refused": True}, Reason.forbidden_fields),
    ({"physician_consultation_number": 5}, Reason.new_physician),
])
def test_each_targeted_rule_fires_on_its_case_and_not_otherwise(facts: dict[str, object], reason: Reason) -> None:
    policy = SamplingPolicy()
    ordinary = Facts(uuid.uuid4(), uuid.uuid4(), "2026-11", rating=5, call_seconds=900.0,
                     recording_state="complete", physician_consultation_number=6)
    assert targeted_reasons(ordinary, policy) == ()
    special = Facts(**{**ordinary.__dict__, **facts})  # type: ignore[arg-type]
    assert targeted_reasons(special, policy) == (reason,)
    decision = decide(special, secret=SECRET, policy=policy)
    assert decision.sampled
    assert reason in decision.reasons
    assert decision.policy_version == policy.version
    assert targeted_reasons(special, SamplingPolicy(targeted=frozenset())) == ()  # a rule can be switched off


def test_a_rate_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        SamplingPolicy(rate=Fraction(0))
    with pytest.raises(ValueError, match="share"):
        SamplingPolicy(rate=Fraction(11, 10))


# --- patients' feedback (qa_audit.feedback): the reasons a rating or complaint gives, by the same rules ----------


@pytest.mark.parametrize(("complaint", "rating", "reasons"), [
    (False, 5, ()),
    (False, 3, ()),
    (False, 2, (Reason.low_rating,)),
    (False, 1, (Reason.low_rating,)),
    (True, 5, (Reason.complaint,)),  # a complaint whatever the rating
    (True, 1, (Reason.complaint, Reason.low_rating)),
    (False, None, ()),
])
def test_feedback_reasons_fire_on_a_complaint_or_a_low_rating_only(complaint: bool, rating: int | None,
                                                                     reasons: tuple[Reason, ...]) -> None:
    from qa_audit.feedback import feedback_reasons

    assert feedback_reasons(complaint=complaint, rating=rating, policy=SamplingPolicy()) == reasons


def test_feedback_reasons_follow_the_clinics_threshold_and_switched_off_rules() -> None:
    from qa_audit.feedback import feedback_reasons

    assert feedback_reasons(complaint=False, rating=3, policy=SamplingPolicy(low_rating=3)) == (Reason.low_rating,)
    assert feedback_reasons(complaint=False, rating=2, policy=SamplingPolicy(low_rating=1)) == ()
    only_complaints = SamplingPolicy(targeted=frozenset({Reason.complaint}))
    assert feedback_reasons(complaint=True, rating=1, policy=only_complaints) == (Reason.complaint,)
    # A physician's first consultations are a rule of the record, not of the feedback: never given here.
    assert feedback_reasons(complaint=False, rating=5, policy=SamplingPolicy(first_consultations=10**6)) == ()
