"""Pinning ICE to 127.0.0.1: only loopback is gathered, and other addresses are neither contacted nor answered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aioice
import aioice.ice
import pytest
from aioice import stun

from media import loopback


@pytest.fixture
def pinned() -> Iterator[None]:
    loopback.pin()
    try:
        yield
    finally:
        loopback.unpin()


def _candidate(host: str) -> aioice.Candidate:
    return aioice.Candidate(foundation="1", component=1, transport="udp", priority=1, host=host, port=50000,
                            type="host")


class _Protocol:
    """Records what the connection would send."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, tuple[str, int]]] = []
        self.local_candidate = _candidate("127.0.0.1")

    def send_stun(self, message: Any, addr: tuple[str, int]) -> None:
        self.sent.append((message, addr))


async def test_pinned_gathers_only_loopback_and_ignores_other_addresses(pinned: None) -> None:
    assert loopback.is_pinned()
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    connection = aioice.Connection(ice_controlling=True)
    for host in ("192.168.1.20", "10.0.0.7", "abcd-1234.local", "2001:db8::1"):
        await connection.add_remote_candidate(_candidate(host))
    await connection.add_remote_candidate(_candidate("127.0.0.1"))
    assert [c.host for c in connection.remote_candidates] == ["127.0.0.1"]

    protocol = _Protocol()
    connection.remote_username, connection.remote_password = "remote", "remote-password"
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{connection.local_username}:remote"
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLED"] = 1
    connection.request_received(request, ("192.168.1.20", 50000), protocol)  # type: ignore[arg-type]
    assert protocol.sent == []  # not even an answer leaves for another address
    connection.request_received(request, ("127.0.0.1", 50000), protocol)  # type: ignore[arg-type]
    assert [addr for _, addr in protocol.sent] == [("127.0.0.1", 50000)]
    await connection.close()


def test_unpin_restores_aioice() -> None:
    original = aioice.ice.get_host_addresses, aioice.ice.Connection.add_remote_candidate
    loopback.pin()
    loopback.pin()  # idempotent
    loopback.unpin()
    assert (aioice.ice.get_host_addresses, aioice.ice.Connection.add_remote_candidate) == original
    assert not loopback.is_pinned()
