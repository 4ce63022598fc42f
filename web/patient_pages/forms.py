"""Reading what a patient sent (links, forms, questionnaires) and mapping the domain's refusals back onto it.

Everything a patient types or a link carries is read leniently into `None` or a message, never into an exception,
so a wrong value shows the same form again with the problem next to the field. The questionnaire is checked here
as the domain will check it, so every problem shows at once instead of one per submit.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.http.problems import ProblemError
from server.scheduling.screening import QuestionnaireDefinition
from web.i18n import N_

TAG = re.compile(r"^[a-z0-9_]{1,40}$")  # a problem code, or a device-check problem from patient.js
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Message = tuple[str, dict[str, Any]]  # a msgid and its named parameters; translated where it is shown


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """An id from a link or form; `None` for anything else, which the pages treat as "not found"."""
    try:
        return uuid.UUID(value or "")
    except ValueError:
        return None


def parse_instant(value: str | None) -> dt.datetime | None:
    """An aware time from a link or form; a `+` that arrived unencoded reads as a space, so take it back."""
    text = (value or "").strip().replace(" ", "+")
    if not text or len(text) > 40:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return parsed.astimezone(dt.UTC)


def parse_date(value: str | None) -> dt.date | None:
    """A date filter from a link; `None` (no filter) for anything that is not a date."""
    try:
        return dt.date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def clean_text(value: str, *, limit: int = 20000) -> str:
    """Typed text without control characters (PostgreSQL refuses NUL), one kind of line break."""
    return CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))[:limit].strip()


def _plain(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@dataclass
class Answers:
    """A questionnaire form read back: clean values for the service, what was typed, and what is wrong."""

    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    errors: dict[str, Message] = field(default_factory=dict)


def read_answers(definition: QuestionnaireDefinition, form: Mapping[str, str]) -> Answers:
    """Each question's field (`answers.<id>`), checked as the domain will check it, so every problem shows at once."""
    found = Answers()
    for question in definition.questions:
        raw = clean_text(form.get(f"answers.{question.id}", ""), limit=50)
        found.raw[question.id] = raw
        if not raw:
            if question.required:
                found.errors[question.id] = (N_("Please answer this question."), {})
            continue
        if question.type == "yes_no":
            if raw not in ("yes", "no"):
                found.errors[question.id] = (N_("Please answer yes or no."), {})
                continue
            found.values[question.id] = raw == "yes"
        elif question.type == "number":
            try:
                value = float(raw.replace(",", ".").replace(" ", ""))
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                found.errors[question.id] = (N_("Please enter a number, using digits."), {})
                continue
            if (question.min is not None and value < question.min) or (
                    question.max is not None and value > question.max):
                found.errors[question.id] = (N_("Please enter a number from %(min)s to %(max)s."),
                                             {"min": _plain(question.min), "max": _plain(question.max)})
                continue
            found.values[question.id] = int(value) if value.is_integer() else value
        else:
            if raw not in {choice.id for choice in question.choices}:
                found.errors[question.id] = (N_("Please choose one of the answers."), {})
                continue
            found.values[question.id] = raw
    return found


def read_device_check(form: Mapping[str, str]) -> dict[str, Any]:
    """What patient.js found (the same shape as the API's `device_check`); without scripts: nothing, `no_js`."""
    problems = [tag for tag in (part.strip() for part in form.get("problems", "").split(",")) if TAG.match(tag)]
    return {"camera": form.get("camera") == "true", "microphone": form.get("microphone") == "true",
            "speaker": form.get("speaker") == "true", "browser": clean_text(form.get("browser", ""), limit=200),
            "problems": list(dict.fromkeys(problems))[:10]}


def answer_errors(problem: ProblemError) -> dict[str, Message]:
    """The domain's verdict on single answers (`answers.<id>`), should it differ from the form's own check."""
    return {error.field.removeprefix("answers."): (N_("Please check this answer."), {})
            for error in problem.errors or [] if error.field.startswith("answers.")}


def problem_code(problem: ProblemError) -> str:
    """The refusal's code as the templates look it up; anything that is not a plain tag becomes `error`."""
    return problem.code if TAG.match(problem.code) else "error"
