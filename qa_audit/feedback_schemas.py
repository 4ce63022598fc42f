"""Request and response models for a patient's feedback on a consultation (the source of its OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.http.parsing import RequestModel

COMPLAINT_MAX_CHARS = 2000

# Strict: `true` or `"5"` is a client's mistake, not a rating; a patient's page sends the digit it showed.
Rating = Annotated[int, Field(strict=True, ge=1, le=5, description="1 (very poor) to 5 (excellent) stars")]


class FeedbackIn(RequestModel):
    rating: Rating
    complaint: str | None = Field(
        default=None, max_length=COMPLAINT_MAX_CHARS,
        description="What went wrong, if the patient makes a complaint; whatever the rating. Empty: no complaint")

    @field_validator("complaint")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None  # stripped already: blank text is no complaint, not an empty one


class FeedbackOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    consultation_id: uuid.UUID
    rating: int
    complaint: str | None
    created_at: dt.datetime
