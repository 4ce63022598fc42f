"""RFC 9457 problem documents: the one shape every error leaves the service in.

Services raise these (or domain exceptions derived from them); one middleware renders them, so
handlers never build error bodies and every error carries a stable `type` and `code`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the failing field, e.g. `birth_date` or `items.0.code`")
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="A stable URI reference naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str = Field(description="The same kind as `type`, as a short machine-readable code")
    request_id: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised anywhere below a handler; rendered as a problem document by the middleware."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, code: str | None = None, title: str | None = None,
                 status: int | None = None, errors: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title or self.title)
        self.detail = detail
        self.code = code or self.code
        self.title = title or self.title
        self.status = status or self.status
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def to_problem(self, *, instance: str | None, request_id: str | None) -> dict[str, Any]:
        body = Problem(
            type=f"/problems/{self.code}", title=self.title, status=self.status, detail=self.detail,
            instance=instance, code=self.code, request_id=request_id, errors=self.errors,
        ).model_dump(exclude_none=True)
        body.update(self.extra)
        return body


class ValidationFailed(ProblemError):
    status, code, title = 422, "validation_failed", "The request is not valid"


class MalformedBody(ProblemError):
    status, code, title = 400, "malformed_body", "The request body is not valid JSON"


class UnsupportedMediaType(ProblemError):
    status, code, title = 415, "unsupported_media_type", "Send the body as application/json"


class Unauthorized(ProblemError):
    status, code, title = 401, "unauthorized", "Authentication is required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="telemed"'})
        super().__init__(detail, **kwargs)


class Forbidden(ProblemError):
    status, code, title = 403, "forbidden", "You may not do this"


class NotFound(ProblemError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(ProblemError):
    status, code, title = 409, "conflict", "Conflicts with the current state"


class TooManyRequests(ProblemError):
    status, code, title = 429, "too_many_requests", "Too many attempts; try again later"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
