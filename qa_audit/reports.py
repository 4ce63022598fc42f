"""The QA reports' arithmetic, pure: from per physician-month counts to rows per physician, department and clinic.

The database hands over small aggregates (`qa_audit.report_queries` groups by physician and month in SQL), never
rows per consultation, so a year of a large clinic is a few thousand numbers here. What is counted:

- **consultations**: completed or documented, in the month of their sampling decision;
- **sampled**, and the **floor** ceil(rate x consultations) checked per physician-month, as the guarantee is:
  a row over several months meets the floor only when each of its physician-months does;
- **reviews done** (submitted, acknowledged, disputed or closed; a second review counts as work done too) and
  **overdue** (assigned or in review, due before today);
- **mean score**, **critical failures** and the **items failed most** over the reviews that stand: a first review
  overruled by a done second review (after a dispute) no longer counts against the physician.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from qa_audit.sampling import floor

MAX_MONTHS = 60  # five years: a longer report is a data export, not a page
DEFAULT_MONTHS = 12  # the current month and the 11 before it


# --- Periods ---------------------------------------------------------------------------------------------------------


def parse_month(text: str) -> str | None:
    """`YYYY-MM` as the month inputs send it, or None; years outside 2000-2999 are typos."""
    if len(text) != 7 or text[4] != "-" or not (text[:4].isdigit() and text[5:].isdigit()):
        return None
    year, month = int(text[:4]), int(text[5:])
    return text if 2000 <= year <= 2999 and 1 <= month <= 12 else None


def shift_month(month: str, delta: int) -> str:
    """The month `delta` months after (or before) `month`."""
    index = int(month[:4]) * 12 + int(month[5:]) - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(frozen=True)
class Period:
    """A run of calendar months, both ends included (`YYYY-MM` strings sort as the months do)."""

    first: str
    last: str

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise ValueError("the period ends before it starts")

    @classmethod
    def ending(cls, today: dt.date, months: int = DEFAULT_MONTHS) -> Period:
        """The default period: this month and the `months - 1` before it."""
        last = today.strftime("%Y-%m")
        return cls(shift_month(last, -(months - 1)), last)

    @property
    def months(self) -> list[str]:
        found, month = [], self.first
        while month <= self.last:
            found.append(month)
            month = shift_month(month, 1)
        return found


# --- What the database hands over ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhysicianInfo:
    id: uuid.UUID
    name: str
    department: str | None


@dataclass(frozen=True)
class MonthSample:
    """One physician-month's completed consultations and how many of them are sampled."""

    physician_id: uuid.UUID
    month: str
    consultations: int
    sampled: int


@dataclass(frozen=True)
class MonthReviews:
    """One physician-month's reviews (by the consultation's month): done, overdue, and the standing ones' scores."""

    physician_id: uuid.UUID
    month: str
    done: int = 0
    overdue: int = 0
    scored: int = 0
    score_sum: float = 0.0
    critical_failures: int = 0


@dataclass(frozen=True)
class FailedItems:
    """`count` standing reviews of the physician's failed exactly `items`."""

    physician_id: uuid.UUID
    items: tuple[str, ...]
    count: int


# --- What the pages show ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One row of the report (a physician, a department, the clinic, or one month of them) over its months."""

    consultations: int = 0
    sampled: int = 0
    floor: int = 0  # the sum of the physician-months' floors
    months_below_floor: int = 0  # physician-months with fewer sampled than their floor
    done: int = 0
    overdue: int = 0
    scored: int = 0
    score_sum: float = 0.0
    critical_failures: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def _values(self) -> tuple[Any, ...]:
        return (self.consultations, self.sampled, self.floor, self.months_below_floor, self.done, self.overdue,
                self.scored, self.score_sum, self.critical_failures)

    @property
    def share(self) -> float | None:
        """Sampled consultations as a share of all (None: no consultations)."""
        return self.sampled / self.consultations if self.consultations else None

    @property
    def floor_share(self) -> float | None:
        """The floor as a share of the consultations: what the sampled share is held against."""
        return self.floor / self.consultations if self.consultations else None

    @property
    def floor_met(self) -> bool:
        return self.months_below_floor == 0

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None


@dataclass(frozen=True)
class TrendPoint:
    month: str
    figures: Figures


@dataclass(frozen=True)
class PhysicianRow:
    physician: PhysicianInfo
    figures: Figures


@dataclass(frozen=True)
class DepartmentRow:
    department: str | None  # None: physicians without a department
    physicians: int
    figures: Figures


@dataclass(frozen=True)
class ItemCount:
    key: str
    count: int


@dataclass(frozen=True)
class Report:
    period: Period
    rate: Fraction
    physicians: list[PhysicianRow]
    departments: list[DepartmentRow]
    total: Figures
    trend: list[TrendPoint]
    failed_items: list[ItemCount] = field(default_factory=list)


def month_figures(sample: MonthSample | None, reviews: MonthReviews | None, rate: Fraction) -> Figures:
    """One physician-month as a row: the floor is checked here, where the guarantee applies."""
    consultations = sample.consultations if sample else 0
    sampled = sample.sampled if sample else 0
    needed = floor(rate, consultations)
    figures = Figures(consultations=consultations, sampled=sampled, floor=needed,
                      months_below_floor=int(sampled < needed))
    if reviews is not None:
        figures += Figures(done=reviews.done, overdue=reviews.overdue, scored=reviews.scored,
                           score_sum=reviews.score_sum, critical_failures=reviews.critical_failures)
    return figures


def _department_key(name: str | None) -> tuple[bool, str]:
    return name is None, (name or "").casefold()  # named departments alphabetically, "no department" last


def build(physicians: Sequence[PhysicianInfo], samples: Iterable[MonthSample], reviews: Iterable[MonthReviews],
          failures: Iterable[FailedItems], *, period: Period, rate: Fraction, top_items: int = 5) -> Report:
    """The report over `period` for `physicians` (counts of anyone else are left out)."""
    wanted = {p.id for p in physicians}
    months = set(period.months)
    by_sample = {(s.physician_id, s.month): s for s in samples if s.physician_id in wanted and s.month in months}
    by_review = {(r.physician_id, r.month): r for r in reviews if r.physician_id in wanted and r.month in months}
    cells: dict[tuple[uuid.UUID, str], Figures] = {
        key: month_figures(by_sample.get(key), by_review.get(key), rate) for key in by_sample.keys() | by_review}
    per_physician: dict[uuid.UUID, Figures] = {}
    per_month: dict[str, Figures] = {}
    for (physician_id, month), figures in cells.items():
        per_physician[physician_id] = per_physician.get(physician_id, Figures()) + figures
        per_month[month] = per_month.get(month, Figures()) + figures
    rows = [PhysicianRow(p, per_physician.get(p.id, Figures()))
            for p in sorted(physicians, key=lambda p: (p.name.casefold(), p.id.hex))]
    departments: dict[str | None, list[PhysicianRow]] = {}
    for row in rows:
        departments.setdefault(row.physician.department, []).append(row)
    department_rows = [DepartmentRow(name, len(members), sum((m.figures for m in members), Figures()))
                       for name, members in sorted(departments.items(), key=lambda kv: _department_key(kv[0]))]
    counted: Counter[str] = Counter()
    for failure in failures:
        if failure.physician_id in wanted:
            for key in set(failure.items):
                counted[key] += failure.count
    items = [ItemCount(key, count) for key, count in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))]
    return Report(period=period, rate=rate, physicians=rows, departments=department_rows,
                  total=sum((row.figures for row in rows), Figures()),
                  trend=[TrendPoint(month, per_month.get(month, Figures())) for month in period.months],
                  failed_items=items[:top_items])


def item_texts(templates: Iterable[tuple[int, Sequence[Mapping[str, Any]]]]) -> dict[str, dict[str, str]]:
    """Each checklist item key's wording (`{en, ru}`), from templates given as (version, items): the newest
    version that has the key wins, so a report names an item as the checklist does now."""
    texts: dict[str, tuple[int, dict[str, str]]] = {}
    for version, items in templates:
        for item in items:
            key, text = item.get("key"), item.get("text")
            if isinstance(key, str) and isinstance(text, Mapping) and (key not in texts or texts[key][0] < version):
                texts[key] = (version, {str(lang): str(value) for lang, value in text.items()})
    return {key: text for key, (_, text) in texts.items()}


def item_text(texts: Mapping[str, Mapping[str, str]], key: str, locale: str) -> str:
    """The item's wording in `locale`, else in English, else its key (an item no template knows any more)."""
    text = texts.get(key, {})
    return text.get(locale) or text.get("en") or key
