"""The call's WebSocket protocol: what a browser may send (validated) and what the server sends back.

Every message is a JSON object with a `type`. docs/signaling.md documents each with examples.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

#: The largest message accepted (an SDP offer of a browser with many codecs is 5-15 KiB).
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CHAT_CHARS = 2000


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # "yes" is not true, "1" not 1


class Join(_Message):
    """The first message of every connection: the ticket from `POST /consultations/{id}/join`."""

    type: Literal["join"]
    consultation_id: uuid.UUID
    ticket: str = Field(min_length=1, max_length=200)


class Offer(_Message):
    type: Literal["offer"]
    sdp: str = Field(min_length=1, max_length=MAX_MESSAGE_BYTES)


class Answer(_Message):
    type: Literal["answer"]
    sdp: str = Field(min_length=1, max_length=MAX_MESSAGE_BYTES)


class Candidate(_Message):
    """As the browser's `RTCIceCandidate.toJSON()` gives it."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)  # browsers add usernameFragment and more

    candidate: str = Field(max_length=1024)
    sdpMid: str | None = Field(default=None, max_length=32)  # the WebRTC spelling, as browsers send it
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=64)  # the WebRTC spelling


class Ice(_Message):
    """A trickled candidate from the browser; `null` means the browser has gathered all of them."""

    type: Literal["ice"]
    candidate: Candidate | None


class MediaState(_Message):
    type: Literal["media_state"]
    muted: bool
    camera: bool


class Chat(_Message):
    type: Literal["chat"]
    text: str = Field(min_length=1, max_length=MAX_CHAT_CHARS)


class Leave(_Message):
    type: Literal["leave"]


class End(_Message):
    """The physician ends the consultation for everyone."""

    type: Literal["end"]


class PauseRecording(_Message):
    """The physician pauses the recording (an intimate examination, say) or resumes it."""

    type: Literal["pause_recording"]
    paused: bool


ClientMessage = Annotated[Join | Offer | Answer | Ice | MediaState | Chat | Leave | End | PauseRecording,
                          Field(discriminator="type")]
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class BadMessage(ValueError):
    """A message that cannot be used; `code` goes into the error event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def parse(raw: str | bytes) -> ClientMessage:
    """The message, validated; BadMessage (`malformed_json`, `unknown_type`, `invalid_message`) otherwise.

    The error names fields and problems, never echoes what was sent (it may be anything).
    """
    try:
        return _client_message.validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        kinds = {error["type"] for error in errors}
        if "json_invalid" in kinds:
            raise BadMessage("malformed_json", "the message is not valid JSON") from None
        if kinds & {"union_tag_invalid", "union_tag_not_found"}:
            raise BadMessage("unknown_type", "the message has no known `type`") from None
        if not any(error["loc"] for error in errors):  # e.g. `dict_type`: an array, a string, null
            raise BadMessage("invalid_message", "the message must be a JSON object") from None
        fields = sorted({".".join(str(part) for part in error["loc"][1:]) or "message" for error in errors})
        raise BadMessage("invalid_message", f"invalid fields: {', '.join(fields)}") from None


# --- Server events. Built here so the shapes live in one place (and docs/signaling.md matches them).

class ParticipantOut(BaseModel):
    participant_id: str
    role: str
    name: str
    state: Literal["connected", "reconnecting"]
    since: dt.datetime
    muted: bool
    camera: bool


def event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event as it goes on the wire (datetimes as ISO 8601 strings)."""
    return {"type": type_, **{key: _jsonable(value) for key, value in fields.items()}}


def error(code: str, message: str) -> dict[str, Any]:
    return event("error", code=code, message=message)


_datetime: TypeAdapter[dt.datetime] = TypeAdapter(dt.datetime)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dt.datetime):
        return _datetime.dump_python(value, mode="json")  # as in the models: 2026-11-22T17:12:33Z
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
