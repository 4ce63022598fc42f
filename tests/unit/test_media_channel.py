"""The media channel's protocol: framing, bad messages, the worker's answers to what it does not understand.

The worker side runs in this process (`media.worker.serve` over a socket pair), so these tests need no
spawned process; the peers it would host are not exercised here (see tests/integration/test_media_workers*.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from media import channel, passthrough
from media.channel import BadMessage, Channel, ChannelClosed, FrameTooLarge
from media.worker import serve

TIMEOUT = 5.0


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_media_channel_frames_round_trip_with_sdp_line_breaks_and_unicode() -> None:
    message = channel.request(7, "answer", {"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "note": "врач"})
    frame = channel.encode(message)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    reader = _reader(frame + channel.encode(channel.event("peer_state", {"state": "failed"})))
    assert channel.decode(await channel.read_frame(reader)) == message
    assert channel.decode(await channel.read_frame(reader))["event"] == "peer_state"
    with pytest.raises(ChannelClosed):
        await channel.read_frame(reader)


async def test_media_channel_refuses_a_too_large_frame_before_reading_its_body() -> None:
    reader = _reader(struct.pack(">I", channel.MAX_FRAME_BYTES + 1) + b"x" * 10)
    with pytest.raises(FrameTooLarge):
        await channel.read_frame(reader)
    with pytest.raises(FrameTooLarge):
        channel.encode({"type": "request", "params": {"sdp": "x" * channel.MAX_FRAME_BYTES}})


async def test_media_channel_truncated_frame_is_a_closed_channel() -> None:
    with pytest.raises(ChannelClosed):
        await channel.read_frame(_reader(struct.pack(">I", 100) + b"{}"))
    with pytest.raises(ChannelClosed):
        await channel.read_frame(_reader(b"\x00\x00"))


@pytest.mark.parametrize(("body", "request_id"), [
    (b"\xff\xfe", None),
    (b"not json", None),
    (b"[1, 2]", None),
    (b'{"id": 3}', 3),
    (b'{"id": true, "type": 5}', None),
])
def test_media_channel_decode_rejects_what_is_not_a_typed_object(body: bytes, request_id: int | None) -> None:
    with pytest.raises(BadMessage) as caught:
        channel.decode(body)
    assert caught.value.request_id == request_id


def test_media_channel_proof_is_an_hmac_of_the_nonce() -> None:
    proof = channel.proof(b"secret", "abc")
    assert channel.proof_matches(b"secret", "abc", proof)
    assert not channel.proof_matches(b"other", "abc", proof)
    assert not channel.proof_matches(b"secret", "abd", proof)
    assert not channel.proof_matches(b"secret", "abc", None)


# --- the worker's side of the protocol, in this process


class Web:
    """The web process's end of a socket pair, talking raw frames to `serve` at the other end."""

    def __init__(self, link: Channel, worker: asyncio.Task[None]) -> None:
        self.link, self.worker = link, worker
        self.events: list[dict[str, Any]] = []

    async def send_raw(self, data: bytes) -> None:
        self.link.writer.write(data)
        await self.link.writer.drain()

    async def receive(self) -> dict[str, Any]:
        """The next response or error (events, e.g. a closing peer's states, are kept aside)."""
        while (message := await asyncio.wait_for(self.link.receive(), TIMEOUT))["type"] == "event":
            self.events.append(message)
        return message

    async def ask(self, request_id: int, method: str, params: Any = None) -> dict[str, Any]:
        await self.link.send({"type": "request", "id": request_id, "method": method, "params": params})
        return await self.receive()


async def _pair() -> tuple[Channel, Channel]:
    ours, theirs = socket.socketpair()
    web = Channel(*await asyncio.open_unix_connection(sock=ours))
    worker = Channel(*await asyncio.open_unix_connection(sock=theirs))
    return web, worker


@pytest.fixture
async def web() -> AsyncIterator[Web]:
    """A worker serving one end of a socket pair (greeted already); the test holds the other end."""
    installed_before = passthrough.is_installed()
    link, worker_end = await _pair()
    worker = asyncio.create_task(serve(worker_end, worker_id="7"))
    await link.send(channel.hello(role="web", nonce="n"))
    greeting = await asyncio.wait_for(link.receive(), TIMEOUT)
    assert greeting["type"] == "hello"
    assert greeting["protocol"] == channel.PROTOCOL_VERSION
    assert greeting["worker_id"] == "7"
    assert greeting["proof"] is None  # no secret on a local socket
    yield Web(link, worker)
    await link.close()
    await asyncio.wait_for(worker, TIMEOUT)
    assert passthrough.is_installed() == installed_before  # the worker's engine gave the decoders back


async def test_media_worker_answers_ping_and_stats(web: Web) -> None:
    assert await web.ask(1, "ping", {}) == {"type": "response", "id": 1, "result": {}}
    stats = (await web.ask(2, "stats"))["result"]
    assert stats["worker_id"] == "7"
    assert (stats["calls"], stats["peers"]) == (0, 0)


async def test_media_worker_unknown_method_is_an_error_with_the_request_id(web: Web) -> None:
    answer = await web.ask(5, "transcode", {})
    assert answer["type"] == "error"
    assert answer["id"] == 5
    assert answer["error"]["code"] == channel.UNKNOWN_METHOD
    assert (await web.ask(6, "ping"))["type"] == "response"  # the connection goes on


async def test_media_worker_invalid_params_and_unknown_calls_are_errors(web: Web) -> None:
    answer = await web.ask(1, "add_peer", {"call_id": "c"})
    assert answer["error"]["code"] == channel.BAD_MESSAGE
    assert "peer_id" in answer["error"]["message"]
    assert (await web.ask(2, "answer", ["not", "an", "object"]))["error"]["code"] == channel.BAD_MESSAGE
    answer = await web.ask(3, "answer", {"call_id": "nope", "peer_id": "p", "sdp": "v=0"})
    assert answer["error"]["code"] == channel.UNKNOWN_CALL
    # Closing what is not there is not an error: the web process may close after a restart.
    assert (await web.ask(4, "close_call", {"call_id": "nope"}))["type"] == "response"
    assert (await web.ask(5, "remove_peer", {"call_id": "nope", "peer_id": "p"}))["type"] == "response"


async def test_media_worker_peer_errors_map_to_codes(web: Web) -> None:
    assert (await web.ask(1, "open_call", {"call_id": "c", "consultation_id": "x", "later": "ignored"}))["result"] == {}
    assert (await web.ask(2, "add_peer", {"call_id": "c", "peer_id": "p", "ice_servers": []}))["result"] == {}
    assert (await web.ask(3, "add_peer", {"call_id": "c", "peer_id": "p"}))["error"]["code"] == channel.PEER_EXISTS
    answer = await web.ask(4, "answer", {"call_id": "c", "peer_id": "p", "sdp": "not sdp"})
    assert answer["error"]["code"] == channel.NEGOTIATION_FAILED
    answer = await web.ask(5, "answer", {"call_id": "c", "peer_id": "q", "sdp": "v=0"})
    assert answer["error"]["code"] == channel.UNKNOWN_PEER
    answer = await web.ask(6, "add_candidate", {"call_id": "c", "peer_id": "p", "candidate": "candidate:x"})
    assert answer["error"]["code"] == channel.NEGOTIATION_FAILED
    stats = (await web.ask(7, "stats"))["result"]
    assert (stats["calls"], stats["peers"]) == (1, 1)
    assert (await web.ask(8, "close_call", {"call_id": "c"}))["result"] == {}
    assert (await web.ask(9, "stats"))["result"]["calls"] == 0
    assert {(e["event"], e["params"]["peer_id"], e["params"]["state"]) for e in web.events} == {
        ("peer_state", "p", "closed")}


async def test_media_worker_bad_messages_are_answered_and_the_connection_goes_on(web: Web) -> None:
    body = b"{not json"
    await web.send_raw(struct.pack(">I", len(body)) + body)
    assert (await web.receive())["error"]["code"] == channel.BAD_MESSAGE
    await web.link.send({"type": "response", "id": 3, "result": {}})  # the web process asks, never answers
    answer = await web.receive()
    assert (answer["id"], answer["error"]["code"]) == (3, channel.BAD_MESSAGE)
    await web.link.send({"type": "request", "id": "1", "method": "ping"})
    assert (await web.receive())["error"]["code"] == channel.BAD_MESSAGE
    assert (await web.ask(4, "ping"))["type"] == "response"


async def test_media_worker_too_large_frame_ends_the_connection(web: Web) -> None:
    await web.send_raw(struct.pack(">I", channel.MAX_FRAME_BYTES + 1))
    assert (await web.receive())["error"]["code"] == channel.FRAME_TOO_LARGE
    with pytest.raises(ChannelClosed):
        await web.receive()
    await asyncio.wait_for(web.worker, TIMEOUT)


async def test_media_worker_refuses_another_protocol_version() -> None:
    link, worker_end = await _pair()
    worker = asyncio.create_task(serve(worker_end))
    await link.send({"type": "hello", "protocol": channel.PROTOCOL_VERSION + 1})
    answer = await asyncio.wait_for(link.receive(), TIMEOUT)
    assert answer["error"]["code"] == channel.PROTOCOL_MISMATCH
    await asyncio.wait_for(worker, TIMEOUT)  # and it stops
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(link.receive(), TIMEOUT)
    await link.close()


async def test_media_worker_over_tcp_proves_the_shared_secret() -> None:
    served: list[asyncio.Task[None]] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(asyncio.current_task())  # type: ignore[arg-type]  # always inside a task
        await serve(Channel(reader, writer), worker_id="remote", secret=b"shared")

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        link = Channel(*await asyncio.open_connection("127.0.0.1", port))
        await link.send(channel.hello(role="web", nonce="f00d"))
        greeting = await asyncio.wait_for(link.receive(), TIMEOUT)
        assert channel.proof_matches(b"shared", "f00d", greeting["proof"])
        assert not channel.proof_matches(b"guess", "f00d", greeting["proof"])
        await link.send(channel.request(1, "ping", {}))
        assert json.dumps(await asyncio.wait_for(link.receive(), TIMEOUT)) == json.dumps(channel.response(1, {}))
        await link.close()
        await asyncio.wait_for(asyncio.gather(*served), TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
