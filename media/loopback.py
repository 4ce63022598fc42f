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
_pinned: dict[str, tuple[object, object]] = {}  # attribute name: (its owner, aioice's original)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an mDNS name (.local) or anything else that is not an address
        return False


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK]


def patches() -> list[tuple[object, str, object]]:
    """What pinning changes: (target, attribute, replacement) triples over aioice's originals. Tests apply them
    with `monkeypatch.setattr`, which undoes them; `pin()` applies them for a whole process."""
    connection = aioice.ice.Connection
    add_remote, request_received = connection.add_remote_candidate, connection.request_received

    async def add_remote_candidate(self: aioice.ice.Connection, candidate: aioice.Candidate | None) -> None:
        if candidate is not None and not _is_loopback(candidate.host):
            return
        await add_remote(self, candidate)

    def request_received_on_loopback(self: aioice.ice.Connection, message: Any, addr: tuple[str, int],
                                     protocol: Any) -> None:
        if not _is_loopback(addr[0]):
            return
        request_received(self, message, addr, protocol)

    return [(aioice.ice, "get_host_addresses", _loopback_host_addresses),
            (connection, "add_remote_candidate", add_remote_candidate),
            (connection, "request_received", request_received_on_loopback)]


def pin() -> None:
    """Pin this process's ICE to 127.0.0.1 (idempotent)."""
    if _pinned:
        return
    for target, name, replacement in patches():
        _pinned[name] = (target, getattr(target, name))
        setattr(target, name, replacement)


def unpin() -> None:
    """Undo `pin` (tests that pin and unpin within one process)."""
    while _pinned:
        name, (target, original) = _pinned.popitem()
        setattr(target, name, original)


def is_pinned() -> bool:
    return bool(_pinned)
