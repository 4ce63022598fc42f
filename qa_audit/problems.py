"""The QA audit's refusals, each a problem document with a stable code."""

from __future__ import annotations

from qa_audit.rules import Problem
from server.http.problems import Conflict, FieldError, ProblemError


def _errors(problems: list[Problem]) -> list[FieldError]:
    return [FieldError(field=p.field, message=p.message, type=p.type) for p in problems]


class ReviewInvalid(ProblemError):
    status, code, title = 422, "validation_failed", "The request is not valid"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems), errors=_errors(problems))


class ReviewIncomplete(ProblemError):
    status, code, title = 422, "review_incomplete", "Answer every item, and say what was wrong for each no"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems), errors=_errors(problems))


class ReviewOutdated(ProblemError):
    """The review changed since the revision this save was based on (another tab): reload rather than
    overwrite."""

    status, code, title = 412, "review_outdated", "The review was changed elsewhere; reload it before saving"

    def __init__(self, current: int) -> None:
        super().__init__(f"the review is at revision {current}", current_revision=current,
                         headers={"ETag": f'"{current}"'})


class WrongStep(Conflict):
    code, title = "review_wrong_step", "The review is not at a step where this can be done"


class NoEligibleExpert(Conflict):
    code, title = "no_eligible_expert", "No QA expert may take this review"
