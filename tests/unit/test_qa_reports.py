"""The QA reports' arithmetic (pure, hand-computed figures) and a done review as a FHIR QuestionnaireResponse."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from fractions import Fraction

import pytest
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from hypothesis import given
from hypothesis import strategies as st

from qa_audit import fhir as qa_fhir
from qa_audit.models import ChecklistTemplate, Review, ReviewStatus
from qa_audit.reports import (
    FailedItems,
    Figures,
    MonthReviews,
    MonthSample,
    Period,
    PhysicianInfo,
    Report,
    build,
    item_text,
    item_texts,
    parse_month,
    shift_month,
)
from qa_audit.rules import DEFAULT_CHECKLIST
from server.people.models import QaExpert

RATE = Fraction(1, 10)
A = PhysicianInfo(uuid.UUID(int=1), "Ivanova", "Cardiology")
B = PhysicianInfo(uuid.UUID(int=2), "Petrov", None)
C = PhysicianInfo(uuid.UUID(int=3), "Abramov", "Cardiology")
STRANGER = uuid.UUID(int=99)
Q1 = Period("2026-01", "2026-03")


def _report() -> Report:
    samples = [MonthSample(A.id, "2026-01", 25, 3),  # floor ceil(2.5) = 3: met
               MonthSample(A.id, "2026-02", 11, 1),  # floor ceil(1.1) = 2: one short
               MonthSample(B.id, "2026-01", 10, 1),  # floor 1: met
               MonthSample(B.id, "2025-12", 50, 0),  # before the period
               MonthSample(STRANGER, "2026-01", 7, 0)]  # not asked for
    reviews = [MonthReviews(A.id, "2026-01", done=3, scored=3, score_sum=240.0, critical_failures=1),
               MonthReviews(A.id, "2026-02", overdue=1),
               MonthReviews(B.id, "2026-01", done=1, scored=1, score_sum=100.0)]
    failures = [FailedItems(A.id, ("consent", "history"), 1), FailedItems(A.id, ("history",), 2),
                FailedItems(B.id, ("red_flags",), 1), FailedItems(STRANGER, ("consent",), 5)]
    return build([A, B, C], samples, reviews, failures, period=Q1, rate=RATE)


def test_report_rows_per_physician_with_the_floor_checked_per_month() -> None:
    report = _report()
    rows = {row.physician.name: row.figures for row in report.physicians}
    assert [row.physician.name for row in report.physicians] == ["Abramov", "Ivanova", "Petrov"]
    a = rows["Ivanova"]
    assert (a.consultations, a.sampled, a.floor, a.months_below_floor) == (36, 4, 5, 1)
    assert not a.floor_met  # February was one short, though 4 of 36 is above 10%
    assert a.share == pytest.approx(4 / 36)
    assert a.floor_share == pytest.approx(5 / 36)
    assert (a.done, a.overdue, a.critical_failures, a.mean_score) == (3, 1, 1, 80.0)
    b = rows["Petrov"]
    assert (b.consultations, b.sampled, b.floor, b.floor_met, b.mean_score) == (10, 1, 1, True, 100.0)
    c = rows["Abramov"]
    assert (c.consultations, c.share, c.mean_score, c.floor_met) == (0, None, None, True)


def test_report_departments_total_trend_and_items() -> None:
    report = _report()
    departments = {row.department: row for row in report.departments}
    assert [row.department for row in report.departments] == ["Cardiology", None]
    cardiology = departments["Cardiology"]
    assert cardiology.physicians == 2
    assert (cardiology.figures.consultations, cardiology.figures.sampled, cardiology.figures.floor) == (36, 4, 5)
    assert not cardiology.figures.floor_met
    assert departments[None].figures.floor_met
    total = report.total
    assert (total.consultations, total.sampled, total.floor, total.done, total.overdue) == (46, 5, 6, 4, 1)
    assert total.mean_score == 85.0  # (240 + 100) / 4 reviews, not the mean of the physicians' means
    trend = [(p.month, p.figures.consultations, p.figures.sampled, p.figures.mean_score)
             for p in report.trend]
    assert trend == [("2026-01", 35, 4, 85.0), ("2026-02", 11, 1, None), ("2026-03", 0, 0, None)]
    assert [(i.key, i.count) for i in report.failed_items] == [
        ("history", 3), ("consent", 1), ("red_flags", 1)]


def test_report_for_one_physician_counts_only_theirs() -> None:
    report = build([B], [MonthSample(A.id, "2026-01", 25, 3), MonthSample(B.id, "2026-02", 4, 0)], [],
                   [FailedItems(A.id, ("history",), 2)], period=Q1, rate=RATE)
    assert (report.total.consultations, report.total.sampled, report.total.floor) == (4, 0, 1)
    assert not report.total.floor_met
    assert report.failed_items == []


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 40), st.integers(0, 40)),
                max_size=20))
def test_report_total_is_the_sum_and_the_floor_holds_per_physician_month(
        cells: list[tuple[int, int, int, int]]) -> None:
    people = [PhysicianInfo(uuid.UUID(int=n + 1), f"P{n}", None if n % 2 else "D") for n in range(4)]
    months = ["2026-01", "2026-02", "2026-03"]
    unique = {(p, m): (n, min(s, n)) for p, m, n, s in cells}
    samples = [MonthSample(people[p].id, months[m], n, s) for (p, m), (n, s) in unique.items()]
    report = build(people, samples, [], [], period=Q1, rate=RATE)
    assert report.total.consultations == sum(n for n, _ in unique.values())
    assert report.total.sampled == sum(s for _, s in unique.values())
    short = sum(1 for n, s in unique.values() if s < math.ceil(n / 10))
    assert report.total.months_below_floor == short
    assert report.total.floor_met == (short == 0)
    assert sum(row.figures.consultations for row in report.departments) == report.total.consultations


def test_figures_add_up() -> None:
    total = Figures(consultations=3, sampled=1, floor=1, scored=1, score_sum=50.0) + Figures(
        consultations=2, sampled=1, floor=1, months_below_floor=1, scored=1, score_sum=100.0)
    assert (total.consultations, total.sampled, total.floor, total.mean_score, total.floor_met) == (5, 2, 2, 75.0,
                                                                                                     False)


def test_periods_and_months() -> None:
    assert parse_month("2026-07") == "2026-07"
    for bad in ("2026-13", "2026-00", "26-07", "2026/07", "1999-12", "2026-7", "abcd-ef"):
        assert parse_month(bad) is None
    assert shift_month("2026-01", -1) == "2025-12"
    assert shift_month("2025-12", 1) == "2026-01"
    assert shift_month("2026-03", -14) == "2025-01"
    default = Period.ending(dt.date(2026, 3, 15))
    assert (default.first, default.last, len(default.months)) == ("2025-04", "2026-03", 12)
    assert Period("2025-11", "2026-02").months == ["2025-11", "2025-12", "2026-01", "2026-02"]
    with pytest.raises(ValueError, match="ends before"):
        Period("2026-02", "2026-01")


def test_item_texts_take_the_newest_wording() -> None:
    texts = item_texts([(2, [{"key": "consent", "text": {"en": "Consent v2", "ru": "Согласие v2"}}]),
                        (1, [{"key": "consent", "text": {"en": "Consent v1"}},
                             {"key": "old", "text": {"en": "Gone since v2"}}])])
    assert item_text(texts, "consent", "ru") == "Согласие v2"
    assert item_text(texts, "old", "ru") == "Gone since v2"  # no Russian: English
    assert item_text(texts, "unknown", "en") == "unknown"


# --- FHIR -----------------------------------------------------------------------------------------------------------

BASE = "https://clinic.example"


def _export(*, status: ReviewStatus = ReviewStatus.submitted, round_: int = 1,
            expert_physician: uuid.UUID | None = None) -> qa_fhir.ReviewExport:
    template = ChecklistTemplate(id=uuid.uuid4(), code=DEFAULT_CHECKLIST["code"], version=3,
                                 title=DEFAULT_CHECKLIST["title"], items=DEFAULT_CHECKLIST["items"])
    expert = QaExpert(id=uuid.uuid4(), user_id=uuid.uuid4(), physician_id=expert_physician)
    review = Review(id=uuid.uuid4(), consultation_id=uuid.uuid4(), physician_id=uuid.uuid4(), expert_id=expert.id,
                    template_id=template.id, round=round_, status=status,
                    assigned_at=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), due_on=dt.date(2026, 3, 9),
                    answers={"identification": {"answer": "yes"},
                             "consent": {"answer": "no", "comment": "Recording not covered", "at": 12.5},
                             "repeat_changes": {"answer": "na"}, "history": {"answer": None}},
                    notes=[{"at": 30, "text": "Long pause"}], summary="Consent to be checked",
                    submitted_at=dt.datetime(2026, 3, 4, 10, tzinfo=dt.UTC), score=57.14285,
                    critical_failures=1, failed_items=["consent"])
    return qa_fhir.ReviewExport(review, template, expert, "Quinn Expert", uuid.uuid4())


def test_a_done_review_maps_to_a_valid_questionnaire_response() -> None:
    export = _export()
    resource = qa_fhir.questionnaire_response(export, base_url=BASE + "/", locale="ru")
    again = QuestionnaireResponse.model_validate_json(resource.model_dump_json(exclude_none=True))
    assert again.id == f"qa-{export.review.id}"
    assert again.status == "completed"
    assert again.questionnaire == f"{BASE}/fhir/Questionnaire/qa-teleconsultation|3"
    assert again.subject.reference == f"Encounter/{export.review.consultation_id}"
    assert again.author.type == "Practitioner"
    assert again.author.identifier.value == str(export.expert.id)
    items = {item.linkId: item for item in again.item}
    assert [item.linkId for item in again.item] == ["identification", "consent", "repeat_changes", "note.0",
                                                    "summary", "score", "critical_failures"]  # unanswered left out
    assert items["identification"].text == "Идентификация участников проведена"
    consent = items["consent"].answer[0]
    assert (consent.valueCoding.code, consent.valueCoding.system) == ("no", f"{BASE}/fhir/CodeSystem/qa-answer")
    nested = {item.linkId: item.answer[0] for item in consent.item}
    assert nested["consent.comment"].valueString == "Recording not covered"
    assert float(nested["consent.at"].valueDecimal) == 12.5
    assert items["repeat_changes"].answer[0].valueCoding.code == "na"
    assert float(items["score"].answer[0].valueDecimal) == 57.14
    assert items["critical_failures"].answer[0].valueInteger == 1
    assert float(items["note.0"].answer[0].item[0].answer[0].valueDecimal) == 30


def test_a_second_review_is_amended_and_names_the_experts_practitioner() -> None:
    physician_id = uuid.uuid4()
    resource = qa_fhir.questionnaire_response(_export(status=ReviewStatus.closed, round_=2,
                                                      expert_physician=physician_id), base_url=BASE, locale="en")
    assert resource.status == "amended"
    assert resource.author.reference == f"Practitioner/{physician_id}"


def test_an_open_review_is_not_exported() -> None:
    with pytest.raises(ValueError, match="done review"):
        qa_fhir.questionnaire_response(_export(status=ReviewStatus.in_review), base_url=BASE, locale="en")


def test_review_resource_ids() -> None:
    review_id = uuid.uuid4()
    assert qa_fhir.parse_resource_id(qa_fhir.resource_id(review_id)) == review_id
    for other in (f"{review_id}-booking", "qa-nonsense", str(review_id)):
        assert qa_fhir.parse_resource_id(other) is None


def test_the_reviewed_physician_is_not_told_who_the_expert_was() -> None:
    resource = qa_fhir.questionnaire_response(_export(), base_url=BASE, locale="en", name_expert=False)
    assert resource.author is not None
    assert (resource.author.type, resource.author.identifier, resource.author.reference) == (
        "Organization", None, None)
    assert "Quinn" not in resource.model_dump_json()
