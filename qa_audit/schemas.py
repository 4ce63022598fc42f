"""The QA audit's REST shapes (and so its OpenAPI)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ChecklistItemOut(BaseModel):
    key: str
    text: dict[str, str]
    weight: int
    critical: bool


class ChecklistOut(BaseModel):
    id: uuid.UUID
    code: str
    version: int
    title: dict[str, str]
    items: list[ChecklistItemOut]


class Texts(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ru: str = Field(min_length=1, max_length=300)
    en: str = Field(min_length=1, max_length=300)


class ChecklistItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="Stable across versions: reports count by it")
    text: Texts
    weight: int = Field(ge=1, le=10)
    critical: bool = False


class ChecklistIn(BaseModel):
    """A new version of a checklist; the reviews already filled keep the version they were filled against."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(default="teleconsultation", pattern=r"^[a-z][a-z0-9_]{0,39}$")
    title: Texts
    items: list[ChecklistItemIn] = Field(min_length=1, max_length=60)

    @field_validator("items")
    @classmethod
    def _unique_keys(cls, items: list[ChecklistItemIn]) -> list[ChecklistItemIn]:
        keys = [item.key for item in items]
        if len(set(keys)) != len(keys):
            raise ValueError("each item needs its own key")
        return items


class ChecklistList(BaseModel):
    items: list[ChecklistOut]


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: Literal["yes", "no", "na"] | None = None
    comment: str = Field(default="", max_length=2000)
    at: float | None = Field(default=None, ge=0, le=4 * 3600, description="A moment of the recording, seconds")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: float = Field(ge=0, le=4 * 3600, description="The moment of the recording the note is pinned to, seconds")
    text: str = Field(min_length=1, max_length=2000)


class DraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: dict[str, AnswerIn] = Field(default_factory=dict, description="By checklist item key")
    notes: list[NoteIn] = Field(default_factory=list, max_length=200)
    summary: str = Field(default="", max_length=2000)
    revision: int | None = Field(default=None, description="The revision this draft was based on (or If-Match)")


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)  # a blank answer is no answer

    response: str = Field(min_length=1, max_length=4000, description="What the physician disagrees with, and why")


class ReassignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expert_id: uuid.UUID | None = Field(default=None, description="Omit for the least loaded eligible expert")


class ReviewsQuery(BaseModel):
    status: Literal["assigned", "in_review", "submitted", "acknowledged", "disputed", "closed", "open",
                    "done"] | None = None


class ReviewOut(BaseModel):
    id: uuid.UUID
    consultation_id: uuid.UUID
    physician_id: uuid.UUID
    expert_id: uuid.UUID | None = Field(description="Hidden from the physician: who audited is the clinic's")
    round: int
    status: str
    assigned_at: dt.datetime
    due_on: dt.date
    overdue: bool
    revision: int
    answers: dict[str, Any]
    notes: list[dict[str, Any]]
    summary: str
    started_at: dt.datetime | None
    submitted_at: dt.datetime | None
    score: float | None
    critical_failures: int | None
    failed_items: list[str]
    response: str | None
    responded_at: dt.datetime | None
    closed_at: dt.datetime | None
    checklist: ChecklistOut


class ReviewList(BaseModel):
    items: list[ReviewOut]
