"""Turning a request's body and query into validated models, or a problem naming the fields."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from server.http.problems import FieldError, MalformedBody, ProblemError, UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


class RequestModel(BaseModel):
    """Base of every request schema: unknown fields are an error, not silently dropped, and text holds
    no control characters (PostgreSQL refuses NUL; none belongs in a name, an e-mail or a note)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value


def field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        errors.append(FieldError(field=field, message=message, type=error["type"]))
    return errors


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise ValidationFailed(
            "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors
        ) from None


def _no_constants(name: str) -> None:
    """NaN and Infinity are not JSON and compare false with everything: a NaN temperature would pass
    every red-flag rule. Refused outright."""
    raise ValueError(f"{name} is not a number JSON allows")


async def parse_json(request: web.Request, model: type[M]) -> M:
    """The body as `model`: 415 if not JSON, 400 if unparseable, 413 if too big, 422 if invalid."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ProblemError("The request body is larger than this service accepts", status=413,
                           code="body_too_large", title="Request body too large") from exc
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"The body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, RecursionError):  # not UTF-8, an integer of thousands of digits, absurd nesting
        raise MalformedBody("The body is not valid JSON this service accepts") from None
    return validate(model, data)


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; repeated keys keep their last value."""
    return validate(model, dict(request.query))


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    """A UUID path parameter; anything else is simply not found (no hint about what exists)."""
    from server.http.problems import NotFound

    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound() from None


async def read_upload(request: web.Request, *, media_types: tuple[str, ...], limit: int) -> tuple[bytes, str]:
    """A raw (non-JSON) body of one of `media_types`, read up to `limit` bytes: 413 past it, 400 if empty.

    Streams the body, so an upload larger than the JSON limit is allowed where it is meant to be."""
    if request.content_type not in media_types:
        raise ProblemError(f"Send the body as one of: {', '.join(media_types)}", status=415,
                           code="unsupported_media_type", title="Unsupported media type")
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    if not size:
        raise ProblemError("The upload is empty", status=400, code="empty", title="Empty upload")
    return b"".join(chunks), request.content_type


def _too_large(limit: int) -> ProblemError:
    return ProblemError(f"The upload is larger than {limit} bytes", status=413, code="too_large",
                        title="Upload too large")
