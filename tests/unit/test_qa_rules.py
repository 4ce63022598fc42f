"""The QA audit's pure rules: whom a review may go to and how load is balanced, due dates in working days, the
checklist's score, and which step of a review may follow which (issue 7)."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from qa_audit import rules
from qa_audit.models import ReviewStatus

ITEMS = rules.DEFAULT_CHECKLIST["items"]
DEPARTMENTS = st.sampled_from([None, "therapy", "cardiology"])


def _uuid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n + 1)


@st.composite
def clinics(draw: st.DrawFn) -> tuple[list[rules.ExpertLoad], list[rules.Case]]:
    """Experts (some of whom also practise) and a stream of sampled consultations by a few physicians."""
    physicians = [(_uuid(1000 + n), draw(DEPARTMENTS)) for n in range(draw(st.integers(1, 6)))]
    experts = []
    for n in range(draw(st.integers(1, 6))):
        practice = draw(st.sampled_from([None, *physicians]))
        experts.append(rules.ExpertLoad(_uuid(n), draw(st.integers(0, 5)),
                                        department=practice[1] if practice else draw(DEPARTMENTS),
                                        physician_id=practice[0] if practice else None))
    cases = [rules.Case(*draw(st.sampled_from(physicians))) for _ in range(draw(st.integers(1, 60)))]
    return experts, cases


@settings(max_examples=300, deadline=None)
@given(clinics(), st.booleans())
def test_assignment_never_gives_an_expert_their_own_or_their_departments_consultation(
        clinic: tuple[list[rules.ExpertLoad], list[rules.Case]], separate: bool) -> None:
    experts, cases = clinic
    loads = {expert.expert_id: expert for expert in experts}
    for case in cases:
        chosen = rules.choose_expert(list(loads.values()), case, separate_departments=separate)
        allowed = [e for e in loads.values() if rules.eligible(e, case, separate_departments=separate)]
        if chosen is None:
            assert not allowed  # nobody is left waiting while someone could take it
            continue
        assert chosen.physician_id != case.physician_id
        if separate and case.department is not None:
            assert chosen.department != case.department
        # The least loaded of those allowed: the choice never widens the gap between eligible experts.
        assert chosen.open_reviews == min(e.open_reviews for e in allowed)
        loads[chosen.expert_id] = rules.ExpertLoad(chosen.expert_id, chosen.open_reviews + 1, chosen.department,
                                                   chosen.physician_id)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 120))
def test_workload_stays_within_one_review_when_everyone_may_take_everything(experts: int, samples: int) -> None:
    loads = [rules.ExpertLoad(_uuid(n), 0) for n in range(experts)]
    case = rules.Case(_uuid(999))
    for _ in range(samples):
        chosen = rules.choose_expert(loads, case, separate_departments=True)
        assert chosen is not None
        loads = [rules.ExpertLoad(e.expert_id, e.open_reviews + (e is chosen)) for e in loads]
        counts = [e.open_reviews for e in loads]
        assert max(counts) - min(counts) <= 1


def test_an_excluded_expert_is_never_chosen_and_departments_only_count_when_configured() -> None:
    first, second = rules.ExpertLoad(_uuid(1), 0, "therapy"), rules.ExpertLoad(_uuid(2), 9, "therapy")
    case = rules.Case(_uuid(50), "therapy")
    assert rules.choose_expert([first, second], case, separate_departments=False) == first
    assert rules.choose_expert([first, second], case, separate_departments=False, excluded=[first.expert_id]) == second
    assert rules.choose_expert([first, second], case, separate_departments=True) is None
    assert rules.choose_expert([first, second], rules.Case(_uuid(50)), separate_departments=True) == first


def test_due_dates_count_working_days() -> None:
    friday = dt.date(2026, 11, 20)
    assert rules.working_days_after(friday, 5) == dt.date(2026, 11, 27)  # the weekend does not count
    assert rules.working_days_after(dt.date(2026, 11, 23), 5) == dt.date(2026, 11, 30)
    assert rules.working_days_after(dt.date(2026, 11, 21), 1) == dt.date(2026, 11, 23)  # Saturday -> Monday
    assert rules.overdue(ReviewStatus.in_review, friday, friday + dt.timedelta(days=1))
    assert not rules.overdue(ReviewStatus.in_review, friday, friday)
    assert not rules.overdue(ReviewStatus.submitted, friday, friday + dt.timedelta(days=9))


def _answers(**answers: str) -> dict[str, dict[str, str]]:
    return {key: {"answer": value, "comment": "why" if value == "no" else ""} for key, value in answers.items()}


def test_the_default_checklist_has_the_clinics_items() -> None:
    keys = [item["key"] for item in ITEMS]
    assert len(keys) == len(set(keys)) == 11
    assert {"consent", "red_flags", "no_diagnosis_primary"} <= {item["key"] for item in ITEMS if item["critical"]}
    assert all(item["text"]["ru"] and item["text"]["en"] and item["weight"] > 0 for item in ITEMS)


def test_the_score_weighs_yes_against_yes_and_no_and_counts_critical_failures() -> None:
    every_yes = {item["key"]: {"answer": "yes"} for item in ITEMS}
    assert rules.score(ITEMS, every_yes) == rules.Score(100.0, 0, [])
    total = sum(item["weight"] for item in ITEMS)
    answers = {**every_yes, **_answers(red_flags="no", communication="no", technical="na")}
    weight = {item["key"]: item["weight"] for item in ITEMS}
    expected = round(100 * (total - weight["technical"] - weight["red_flags"] - weight["communication"])
                     / (total - weight["technical"]), 1)
    assert rules.score(ITEMS, answers) == rules.Score(expected, 1, ["red_flags", "communication"])
    assert rules.score(ITEMS, {item["key"]: {"answer": "na"} for item in ITEMS}).score is None


def test_submission_needs_every_item_answered_and_a_reason_for_each_no() -> None:
    answers = {item["key"]: {"answer": "yes"} for item in ITEMS}
    assert rules.submission_problems(ITEMS, answers) == []
    answers["consent"] = {"answer": "no", "comment": "  "}
    del answers["history"]
    fields = [problem.field for problem in rules.submission_problems(ITEMS, answers)]
    assert fields == ["answers.consent.comment", "answers.history.answer"]


def test_a_draft_refuses_unknown_items_bad_answers_and_moments_outside_the_recording() -> None:
    problems = rules.draft_problems(ITEMS, {"nonsense": {"answer": "yes"}, "consent": {"answer": "maybe"},
                                            "history": {"answer": "yes", "at": -1}},
                                    [{"at": 12.5, "text": "patient hesitates"}, {"at": 3, "text": " "},
                                     {"text": "no moment"}])
    assert [p.field for p in problems] == ["answers.nonsense", "answers.consent.answer", "answers.history.at",
                                           "notes.1.text", "notes.2.at"]
    assert rules.draft_problems(ITEMS, {"consent": {"answer": None, "comment": "later"}}, []) == []


def test_the_workflow_allows_only_its_steps() -> None:
    s = ReviewStatus
    assert rules.next_status(s.assigned, "save") is s.in_review
    assert rules.next_status(s.in_review, "submit") is s.submitted
    assert rules.next_status(s.submitted, "acknowledge") is s.acknowledged
    assert rules.next_status(s.submitted, "dispute") is s.disputed
    assert rules.next_status(s.disputed, "close") is s.closed
    assert rules.next_status(s.in_review, "submit", round_=2) is s.closed  # a second review is final
    assert rules.next_status(s.closed, "dispute", round_=2) is None
    for status in (s.submitted, s.acknowledged, s.disputed, s.closed):
        assert rules.next_status(status, "save") is None
        assert rules.next_status(status, "reassign") is None
    assert rules.next_status(s.acknowledged, "dispute") is None
    assert rules.next_status(s.assigned, "acknowledge") is None
