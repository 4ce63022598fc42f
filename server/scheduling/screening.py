"""Screening questionnaires and their rules, as data: what to ask, and which answers stop a booking.

A questionnaire is a versioned JSON document (see `seed/questionnaires/`). Rules are evaluated by
`evaluate` here, a pure function, so clinics change thresholds by publishing a new version, never code.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Text(BaseModel):
    """The same text in the clinic's two languages."""

    model_config = ConfigDict(extra="forbid")
    ru: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, locale: str) -> str:
        return self.ru if locale == "ru" else self.en


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    text: Text


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    type: Literal["yes_no", "number", "choice"]
    text: Text
    required: bool = True
    unit: str | None = None  # for numbers, e.g. "°C"
    min: float | None = None
    max: float | None = None
    choices: list[Choice] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> Question:
        if self.type == "choice" and len(self.choices) < 2:
            raise ValueError(f"question {self.id}: a choice needs at least two options")
        if self.type != "choice" and self.choices:
            raise ValueError(f"question {self.id}: only choice questions have options")
        if self.type != "number" and (self.unit or self.min is not None or self.max is not None):
            raise ValueError(f"question {self.id}: unit and bounds belong to number questions")
        return self


class Comparison(BaseModel):
    """`answer <op> value` for one question."""

    model_config = ConfigDict(extra="forbid")
    question: str
    op: Literal["eq", "ne", "gt", "ge", "lt", "le", "in"]
    value: bool | float | str | list[str]


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: list[Condition] = Field(min_length=1)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    any: list[Condition] = Field(min_length=1)


Condition = Annotated[Comparison | AllOf | AnyOf, Field(union_mode="left_to_right")]
AllOf.model_rebuild()
AnyOf.model_rebuild()


class RuleKind(StrEnum):
    red_flag = "red_flag"  # an emergency: no teleconsultation, call an ambulance
    in_person = "in_person"  # a contraindication: come to the clinic instead


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: RuleKind
    when: Condition
    message: Text


class QuestionnaireDefinition(BaseModel):
    """One version of a questionnaire, as published."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[a-z0-9_]+$")
    version: int = Field(ge=1)
    title: Text
    questions: list[Question] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> QuestionnaireDefinition:
        questions = {q.id: q for q in self.questions}
        if len(questions) != len(self.questions):
            raise ValueError("question ids must be unique")
        for rule in self.rules:
            for comparison in _comparisons(rule.when):
                question = questions.get(comparison.question)
                if question is None:
                    raise ValueError(f"rule {rule.id} names unknown question {comparison.question}")
                _check_value(rule.id, question, comparison)
        return self


def _comparisons(condition: Comparison | AllOf | AnyOf) -> list[Comparison]:
    if isinstance(condition, Comparison):
        return [condition]
    parts = condition.all if isinstance(condition, AllOf) else condition.any
    return [c for part in parts for c in _comparisons(part)]


def _check_value(rule_id: str, question: Question, comparison: Comparison) -> None:
    value = comparison.value
    if question.type == "number" and not (isinstance(value, int | float) and not isinstance(value, bool)):
        raise ValueError(f"rule {rule_id}: {question.id} is a number")
    if question.type == "yes_no" and not isinstance(value, bool):
        raise ValueError(f"rule {rule_id}: {question.id} is yes/no")
    if question.type == "choice":
        allowed = {c.id for c in question.choices}
        given = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v in allowed for v in given):
            raise ValueError(f"rule {rule_id}: {question.id} has no such choice")


class AnswerError(ValueError):
    """Answers that do not fit the questionnaire; `field` names the question."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_answers(definition: QuestionnaireDefinition, answers: dict[str, Any]) -> dict[str, Any]:
    """The answers, checked against each question's type and bounds; unknown questions are an error."""
    questions = {q.id: q for q in definition.questions}
    for key in answers:
        if key not in questions:
            raise AnswerError(key, "not a question of this questionnaire")
    clean: dict[str, Any] = {}
    for question in definition.questions:
        value = answers.get(question.id)
        if value is None:
            if question.required:
                raise AnswerError(question.id, "an answer is required")
            continue
        if question.type == "yes_no":
            if not isinstance(value, bool):
                raise AnswerError(question.id, "answer yes (true) or no (false)")
        elif question.type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise AnswerError(question.id, "a number is expected")
            if (question.min is not None and value < question.min) or (
                    question.max is not None and value > question.max):
                raise AnswerError(question.id, f"must be between {question.min} and {question.max}")
        elif not isinstance(value, str) or value not in {c.id for c in question.choices}:
            raise AnswerError(question.id, "not one of the offered choices")
        clean[question.id] = value
    return clean


def _holds(condition: Comparison | AllOf | AnyOf, answers: dict[str, Any]) -> bool:
    if isinstance(condition, AllOf):
        return all(_holds(part, answers) for part in condition.all)
    if isinstance(condition, AnyOf):
        return any(_holds(part, answers) for part in condition.any)
    answer = answers.get(condition.question)
    if answer is None:
        return False
    value = condition.value
    match condition.op:
        case "eq":
            return bool(answer == value)
        case "ne":
            return bool(answer != value)
        case "in":
            return isinstance(value, list) and answer in value
        case "gt":
            return bool(answer > value)
        case "ge":
            return bool(answer >= value)
        case "lt":
            return bool(answer < value)
        case _:
            return bool(answer <= value)


def evaluate(definition: QuestionnaireDefinition, answers: dict[str, Any]) -> list[Rule]:
    """The rules the (validated) answers trigger, red flags first."""
    triggered = [rule for rule in definition.rules if _holds(rule.when, answers)]
    return sorted(triggered, key=lambda rule: rule.kind is not RuleKind.red_flag)


class ConditionEntry(BaseModel):
    """One entry of the clinic's catalogue of conditions allowed for teleconsultation (seed format)."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[a-z0-9_]+$")
    icd10: str | None = Field(default=None, pattern=r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,2})?(-[A-Z][0-9]{2}(\.[0-9])?)?$")
    name: Text
    audience: Literal["adult", "child", "any"] = "any"
    allows_primary: bool = True
    allows_repeat: bool = True
    questionnaire: str = Field(pattern=r"^[a-z0-9_]+$")

    @model_validator(mode="after")
    def _some_kind(self) -> ConditionEntry:
        if not (self.allows_primary or self.allows_repeat):
            raise ValueError(f"condition {self.code} allows neither primary nor repeat consultations")
        return self
