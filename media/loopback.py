"""Keeping a process's ICE on 127.0.0.1, for tests and benchmarks (TELEMED_ENV=test), never in production.

The machine the tests run on has other addresses, and no media may reach them. aioice gathers a candidate on
every interface but loopback, and a browser offers its LAN addresses as well as 127.0.0.1 (Chromium with
`--allow-loopback-in-peer-connection`). Pinned, this process gathers 127.0.0.1 only, ignores remote candidates
on any other address (so it never sends a check there) and neither answers nor learns from checks arriving from any
other address (no peer-reflexive candidate). Only 127.0.0.1 pairs remain.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import aioice.ice

LOOPBACK = "127.0.0.1"
_pinned: dict[str, Any] = {}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an mDNS name (.local) or anything else that is not an address
        return False


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK]


def pin() -> None:
    """Pin this process's ICE to 127.0.0.1 (idempotent)."""
    if _pinned:
        return
    connection = aioice.ice.Connection
    add_remote, request_received = connection.add_remote_candidate, connection.request_received
    _pinned.update(get_host_addresses=aioice.ice.get_host_addresses, add_remote_candidate=add_remote,
                   request_received=request_received)

    async def add_remote_candidate(self: aioice.ice.Connection, candidate: aioice.Candidate | None) -> None:
        if candidate is not None and not _is_loopback(candidate.host):
            return
        await add_remote(self, candidate)

    def request_received_on_loopback(self: aioice.ice.Connection, message: Any, addr: tuple[str, int],
                                   protocol: Any) -> None:
        if not _is_loopback(addr[0]):
            return
        request_received(self, message, addr, protocol)

    aioice.ice.get_host_addresses = _loopback_host_addresses
    connection.add_remote_candidate = add_remote_candidate  # type: ignore[method-assign,assignment]
    connection.request_received = request_received_on_loopback  # type: ignore[method-assign]


def unpin() -> None:
    """Undo `pin` (tests that pin and unpin within one process)."""
    if not _pinned:
        return
    aioice.ice.get_host_addresses = _pinned.pop("get_host_addresses")
    aioice.ice.Connection.add_remote_candidate = _pinned.pop("add_remote_candidate")  # type: ignore[method-assign]
    aioice.ice.Connection.request_received = _pinned.pop("request_received")  # type: ignore[method-assign]


def is_pinned() -> bool:
    return bool(_pinned)
