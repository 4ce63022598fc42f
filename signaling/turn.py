"""Short-lived TURN credentials, as coturn's `use-auth-secret` (the "TURN REST API") expects them.

The username is `<expiry unix time>:<participant>` and the password base64(HMAC-SHA1(secret, username)):
coturn recomputes it from the shared secret, so no credential is stored anywhere and each expires by itself.
SHA-1 here is the protocol's choice (RFC 5389 long-term credentials), not ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class IceServer:
    """One entry of RTCPeerConnection's `iceServers`."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def as_json(self) -> dict[str, object]:
        entry: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"], entry["credential"] = self.username, self.credential
        return entry


def turn_credentials(secret: bytes, participant: str, *, now: int, lifetime: int) -> tuple[str, str]:
    """(username, password) valid until `now + lifetime` on a coturn sharing `secret`."""
    if ":" in participant:
        raise ValueError("the participant part of a TURN username cannot contain ':'")
    username = f"{now + lifetime}:{participant}"
    password = base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()
    return username, password


def ice_servers(*, stun_urls: list[str], turn_urls: list[str], secret: bytes | None, participant: str, now: int,
                lifetime: int) -> list[IceServer]:
    """What a participant's browser (and the server's peer) may use: the clinic's STUN and TURN, never a
    public default. Without a TURN secret, TURN is left out (development on one machine needs none)."""
    servers = [IceServer(tuple(stun_urls))] if stun_urls else []
    if turn_urls and secret is not None:
        username, password = turn_credentials(secret, participant, now=now, lifetime=lifetime)
        servers.append(IceServer(tuple(turn_urls), username, password))
    return servers
