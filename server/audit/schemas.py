"""Response models for a patient's view of the audit log."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from server.http.parsing import RequestModel


class AccessLogQuery(RequestModel):
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(default=None, ge=1, le=2**63 - 1,
                               description="Cursor: `next_before` of the previous page")


class AccessLogItemOut(BaseModel):
    at: dt.datetime
    action: str
    object_type: str
    outcome: str
    actor_role: str | None
    actor_name: str | None = Field(description="Staff member's name; empty for the patient's own actions")
    by_you: bool


class AccessLogOut(BaseModel):
    items: list[AccessLogItemOut]
    next_before: int | None
