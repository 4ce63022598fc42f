"""The media channel's wire format: length-prefixed JSON messages over any byte stream (docs/media-workers.md).

The web process drives media workers through it: over an inherited Unix socket for the workers it spawns
itself, and (later) over TCP for workers on other hosts, with the same framing and messages. A frame is a
4-byte big-endian length, then that many bytes of one UTF-8 JSON object; nothing else travels. Length
prefixes rather than newlines so SDP (full of line breaks) needs no escaping beyond JSON's, and a reader
knows a frame's size before reading it, so an oversized one is refused without being buffered.

Messages (each has a "type"): `hello` (both sides, first), `request` (web → worker, with an "id"),
`response` / `error` (worker → web, echoing the id), `event` (worker → web, unasked).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import struct
from typing import Any

#: Bumped when a message changes meaning or gains a required field; unknown fields are ignored, not an error.
PROTOCOL_VERSION = 1
#: The largest frame either side sends or accepts. An offer's SDP is at most 64 KiB (signaling's own limit).
MAX_FRAME_BYTES = 256 * 1024
_LENGTH = struct.Struct(">I")

# Error codes (docs/media-workers.md); the web process maps them back to media.calls' exceptions.
BAD_MESSAGE = "bad_message"
UNKNOWN_METHOD = "unknown_method"
UNKNOWN_CALL = "unknown_call"
UNKNOWN_PEER = "unknown_peer"
PEER_EXISTS = "peer_exists"
NEGOTIATION_FAILED = "negotiation_failed"
FRAME_TOO_LARGE = "frame_too_large"
PROTOCOL_MISMATCH = "protocol_mismatch"
NOT_AUTHENTICATED = "not_authenticated"
INTERNAL = "internal"


class ChannelError(Exception):
    """The stream no longer carries valid frames (closed, truncated, oversized): the connection must end."""


class ChannelClosed(ChannelError):
    """The other side closed the stream (at a frame boundary or inside one)."""


class FrameTooLarge(ChannelError):
    """A frame over MAX_FRAME_BYTES: refused before reading (or sending) its body."""


class BadMessage(ValueError):
    """A well-framed message that is not what the protocol allows; the connection can go on."""

    def __init__(self, message: str, *, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def encode(message: dict[str, Any], *, limit: int = MAX_FRAME_BYTES) -> bytes:
    """One frame: the length prefix and the message as compact UTF-8 JSON."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > limit:
        raise FrameTooLarge(f"a {message.get('type', '?')} message of {len(body)} bytes (limit {limit})")
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, *, limit: int = MAX_FRAME_BYTES) -> bytes:
    """The next frame's body; ChannelClosed at the end of the stream, FrameTooLarge for an oversized one."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        raise ChannelClosed("the other side closed the channel") from exc
    (length,) = _LENGTH.unpack(header)
    if length > limit:
        raise FrameTooLarge(f"a frame of {length} bytes (limit {limit})")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ChannelClosed("the channel closed inside a frame") from exc


def decode(body: bytes) -> dict[str, Any]:
    """A frame's message: a JSON object with a string "type"; BadMessage otherwise."""
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadMessage("not UTF-8 JSON") from None
    if not isinstance(message, dict):
        raise BadMessage("not a JSON object")
    request_id = message.get("id")
    request_id = request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None
    if not isinstance(message.get("type"), str):
        raise BadMessage("no message type", request_id=request_id)
    return message


class Channel:
    """Messages over one stream: `send` writes whole frames, `receive` returns the next message.

    Writes are synchronous into the transport's buffer (a frame is never interleaved with another) and
    `drain` is awaited after each, so a stalled peer slows its sender instead of filling memory.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 limit: int = MAX_FRAME_BYTES) -> None:
        self.reader = reader
        self.writer = writer
        self.limit = limit

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message; ChannelClosed if the stream is gone."""
        frame = encode(message, limit=self.limit)
        if self.writer.is_closing():
            raise ChannelClosed("the channel is closed")
        self.writer.write(frame)
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ChannelClosed("the other side went away") from exc

    async def receive(self) -> dict[str, Any]:
        """The next message. ChannelError ends the connection; BadMessage concerns one message only."""
        return decode(await read_frame(self.reader, limit=self.limit))

    async def close(self) -> None:
        """Close the stream (the other side reads end-of-stream) and wait until the socket is released."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.writer.wait_closed()


# --- message constructors: one place that knows each message's shape


def hello(**fields: Any) -> dict[str, Any]:
    """The first message of each side, with the protocol version."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, **fields}


def request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Web to worker: do `method`; answered once, with the same id."""
    return {"type": "request", "id": request_id, "method": method, "params": params}


def response(request_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """Worker to web: the request with this id succeeded."""
    return {"type": "response", "id": request_id, "result": result}


def error(request_id: int | None, code: str, message: str) -> dict[str, Any]:
    """The request with this id failed (no id: the connection's own trouble); `code` says how, for the web."""
    return {"type": "error", "id": request_id, "error": {"code": code, "message": message}}


def event(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Worker to web, unasked: something happened (a peer's connection state)."""
    return {"type": "event", "event": name, "params": params}


def proof(secret: bytes, nonce: str) -> str:
    """The worker's answer to the web's hello nonce on TCP: HMAC-SHA256(secret, nonce), hex."""
    return hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()


def proof_matches(secret: bytes, nonce: str, given: object) -> bool:
    """Constant-time check of a worker's proof."""
    return isinstance(given, str) and hmac.compare_digest(proof(secret, nonce), given)
