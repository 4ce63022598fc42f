"""The QA audit's pure decisions: who may review what, when it is due, what a filled checklist scores, and which
step of the review's way may follow which. No I/O and no clock: the services pass today and the facts in."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qa_audit.models import ReviewStatus

ANSWERS = ("yes", "no", "na")
MAX_COMMENT = 2000
MAX_NOTES = 200
MAX_RECORDING_SECONDS = 4 * 3600  # a time point beyond four hours is a typo, not a moment of an 18-minute call


# --- The clinic's default checklist ---------------------------------------------------------------------------------

def _item(key: str, en: str, ru: str, *, weight: int, critical: bool = False) -> dict[str, Any]:
    return {"key": key, "text": {"en": en, "ru": ru}, "weight": weight, "critical": critical}


#: The patient-physician teleconsultation checklist the clinic starts with (version 1). Critical items are the ones
#: the practice forbids or requires outright: consent, red flags, no diagnosis in a primary consultation.
DEFAULT_CHECKLIST: dict[str, Any] = {
    "code": "teleconsultation",
    "version": 1,
    "title": {"en": "Patient-physician teleconsultation", "ru": "Телеконсультация «врач — пациент»"},
    "items": [
        _item("identification", "Participant identification done",
              "Идентификация участников проведена", weight=2, critical=True),
        _item("consent", "Consent valid and covering recording",
              "Согласие действительно и распространяется на запись", weight=2, critical=True),
        _item("history", "Complaints and history collected", "Жалобы и анамнез собраны", weight=2),
        _item("red_flags", "Red flags asked about and handled",
              "Тревожные признаки выяснены и учтены", weight=3, critical=True),
        _item("recommendations", "Recommendations appropriate to the complaint",
              "Рекомендации соответствуют жалобам", weight=2),
        _item("referral", "In-person visit or tests recommended where needed",
              "Очный приём или обследование рекомендованы, где нужно", weight=2),
        _item("no_diagnosis_primary", "No diagnosis or prescription in a primary consultation",
              "В первичной консультации нет диагноза и назначений", weight=3, critical=True),
        _item("repeat_changes", "Repeat consultation changes justified",
              "Изменения лечения на повторной консультации обоснованы", weight=2),
        _item("protocol", "Protocol complete and signed", "Протокол заполнен и подписан", weight=2),
        _item("communication", "Communication and ethics", "Коммуникация и этика", weight=1),
        _item("technical", "Technical quality (sound, video, connection)",
              "Техническое качество (звук, видео, связь)", weight=1),
    ],
}


# --- Assignment -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExpertLoad:
    """An expert as assignment sees them: whose practice and department they belong to, and their open reviews."""

    expert_id: uuid.UUID
    open_reviews: int
    department: str | None = None
    physician_id: uuid.UUID | None = None  # their own practice, when they also see patients


@dataclass(frozen=True)
class Case:
    """What assignment must keep the expert away from: the consultation's physician and their department."""

    physician_id: uuid.UUID
    department: str | None = None


def eligible(expert: ExpertLoad, case: Case, *, separate_departments: bool,
             excluded: Iterable[uuid.UUID] = ()) -> bool:
    """Never one's own consultation; with `separate_departments`, never one's department's; never an excluded
    expert (the first reviewer, for a second review)."""
    if expert.expert_id in set(excluded) or expert.physician_id == case.physician_id:
        return False
    return not (separate_departments and case.department is not None and expert.department == case.department)


def choose_expert(experts: Sequence[ExpertLoad], case: Case, *, separate_departments: bool,
                  excluded: Iterable[uuid.UUID] = ()) -> ExpertLoad | None:
    """The eligible expert with the fewest open reviews (ties by id, so the choice is reproducible); None when
    nobody may take it. Giving each review to the least loaded keeps open workloads within one of each other."""
    excluded = set(excluded)
    candidates = [expert for expert in experts
                  if eligible(expert, case, separate_departments=separate_departments, excluded=excluded)]
    return min(candidates, key=lambda expert: (expert.open_reviews, expert.expert_id.hex), default=None)


def working_days_after(start: dt.date, days: int) -> dt.date:
    """`days` working days (Monday to Friday) after `start`: the review's due date."""
    current, left = start, days
    while left > 0:
        current += dt.timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


def overdue(status: ReviewStatus, due_on: dt.date, today: dt.date) -> bool:
    return status in (ReviewStatus.assigned, ReviewStatus.in_review) and due_on < today


# --- Filling and scoring the checklist ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    type: str = "invalid"


def draft_problems(items: Sequence[Mapping[str, Any]], answers: Mapping[str, Any],
                   notes: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """What makes a draft unsavable: an unknown item, an answer other than yes/no/na, a comment too long, a time
    point outside the recording. An unanswered item is fine in a draft."""
    keys = {item["key"] for item in items}
    problems: list[Problem] = []
    for key, entry in answers.items():
        where = f"answers.{key}"
        if key not in keys:
            problems.append(Problem(where, "No such item in this checklist"))
            continue
        if not isinstance(entry, Mapping):
            problems.append(Problem(where, "Expected an object with answer, comment and at"))
            continue
        if entry.get("answer") not in (*ANSWERS, None):
            problems.append(Problem(f"{where}.answer", "Answer yes, no or na"))
        problems.extend(_text_problems(f"{where}.comment", entry.get("comment")))
        problems.extend(_time_problems(f"{where}.at", entry.get("at")))
    if len(notes) > MAX_NOTES:
        problems.append(Problem("notes", f"At most {MAX_NOTES} notes"))
    for index, note in enumerate(notes):
        if not isinstance(note, Mapping):
            problems.append(Problem(f"notes.{index}", "Expected an object with at and text"))
            continue
        problems.extend(_time_problems(f"notes.{index}.at", note.get("at"), required=True))
        text = note.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem(f"notes.{index}.text", "Write the note"))
        else:
            problems.extend(_text_problems(f"notes.{index}.text", text))
    return problems


def _text_problems(field: str, value: Any) -> list[Problem]:
    if value is None:
        return []
    if not isinstance(value, str):
        return [Problem(field, "Expected text")]
    return [Problem(field, f"At most {MAX_COMMENT} characters")] if len(value) > MAX_COMMENT else []


def _time_problems(field: str, value: Any, *, required: bool = False) -> list[Problem]:
    if value is None:
        return [Problem(field, "Give the moment of the recording, in seconds")] if required else []
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_RECORDING_SECONDS:
        return [Problem(field, "A moment of the recording in seconds, from 0")]
    return []


def submission_problems(items: Sequence[Mapping[str, Any]], answers: Mapping[str, Any]) -> list[Problem]:
    """What keeps a review from being submitted: an item left unanswered, or a "no" without a comment saying
    what was wrong (the physician reads it, and may dispute it)."""
    problems: list[Problem] = []
    for item in items:
        entry = answers.get(item["key"]) or {}
        answer = entry.get("answer")
        if answer not in ANSWERS:
            problems.append(Problem(f"answers.{item['key']}.answer", "Answer yes, no or not applicable"))
        elif answer == "no" and not (entry.get("comment") or "").strip():
            problems.append(Problem(f"answers.{item['key']}.comment", "Say what was wrong"))
    return problems


@dataclass(frozen=True)
class Score:
    score: float | None  # None when every item is not applicable
    critical_failures: int
    failed_items: list[str]


def score(items: Sequence[Mapping[str, Any]], answers: Mapping[str, Any]) -> Score:
    """The weighted share of items answered yes among those answered yes or no, as a percentage; the critical
    items answered no; the keys of every item answered no, in checklist order."""
    earned = possible = 0
    failed: list[str] = []
    critical = 0
    for item in items:
        answer = (answers.get(item["key"]) or {}).get("answer")
        if answer not in ("yes", "no"):
            continue
        possible += item["weight"]
        if answer == "yes":
            earned += item["weight"]
        else:
            failed.append(item["key"])
            critical += bool(item["critical"])
    return Score(round(100 * earned / possible, 1) if possible else None, critical, failed)


# --- The review's way -----------------------------------------------------------------------------------------------

#: (status, action) -> the status after it. Round 2 (the second review) closes when submitted.
TRANSITIONS: dict[tuple[ReviewStatus, str], ReviewStatus] = {
    (ReviewStatus.assigned, "save"): ReviewStatus.in_review,
    (ReviewStatus.in_review, "save"): ReviewStatus.in_review,
    (ReviewStatus.assigned, "submit"): ReviewStatus.submitted,
    (ReviewStatus.in_review, "submit"): ReviewStatus.submitted,
    (ReviewStatus.submitted, "acknowledge"): ReviewStatus.acknowledged,
    (ReviewStatus.submitted, "dispute"): ReviewStatus.disputed,
    (ReviewStatus.disputed, "close"): ReviewStatus.closed,
    (ReviewStatus.assigned, "reassign"): ReviewStatus.assigned,
    (ReviewStatus.in_review, "reassign"): ReviewStatus.assigned,
}


def next_status(status: ReviewStatus, action: str, *, round_: int = 1) -> ReviewStatus | None:
    """The status `action` leads to, or None when it is not allowed now. A second review is final: submitting
    it closes it, and it cannot itself be disputed."""
    if round_ > 1 and action == "submit" and status in (ReviewStatus.assigned, ReviewStatus.in_review):
        return ReviewStatus.closed
    if round_ > 1 and action in ("acknowledge", "dispute"):
        return None
    return TRANSITIONS.get((status, action))
