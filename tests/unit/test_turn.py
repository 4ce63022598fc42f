"""TURN REST credentials (coturn `use-auth-secret`) and who may join a call when."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from server.scheduling.models import ConsultationStatus as S
from server.settings import Settings
from signaling import rules, turn
from signaling.handler import server_ice_servers
from signaling.models import CallRole


def test_turn_password_is_base64_hmac_sha1_of_the_username() -> None:
    username, password = turn.turn_credentials(b"north", "ticket-1", now=1_700_000_000, lifetime=3600)
    assert username == "1700003600:ticket-1"
    mac = hmac.HMAC(b"north", hashes.SHA1())  # noqa: S303  # the TURN REST API's algorithm, checked independently
    mac.update(username.encode())
    assert base64.b64decode(password) == mac.finalize()
    with pytest.raises(ValueError, match="':'"):
        turn.turn_credentials(b"north", "a:b", now=0, lifetime=1)


def test_ice_servers_never_fall_back_to_a_public_default() -> None:
    assert turn.ice_servers(stun_urls=[], turn_urls=[], secret=None, participant="p", now=0, lifetime=60) == []
    no_secret = turn.ice_servers(stun_urls=["stun:turn.clinic.example:3478"], turn_urls=["turn:turn.clinic.example"],
                                 secret=None, participant="p", now=0, lifetime=60)
    assert [s.as_json() for s in no_secret] == [{"urls": ["stun:turn.clinic.example:3478"]}]
    full = turn.ice_servers(stun_urls=[], turn_urls=["turn:127.0.0.1:3478?transport=udp"], secret=b"s",
                            participant="p", now=100, lifetime=60)
    assert full[0].as_json()["username"] == "160:p"


START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(minutes=20)
WINDOW = {"opens_before": dt.timedelta(minutes=15), "overrun": dt.timedelta(minutes=30)}


@pytest.mark.parametrize(("role", "status", "now", "expected"), [
    (CallRole.physician, S.waiting, START, None),
    (CallRole.physician, S.scheduled, START, "call_not_open"),
    (CallRole.patient, S.waiting, START, "not_admitted"),
    (CallRole.patient, S.in_call, START, None),
    (CallRole.patient, S.interrupted, END, None),
    (CallRole.patient, S.completed, START, "call_not_open"),
    (CallRole.physician, S.in_call, START - dt.timedelta(minutes=16), "too_early"),
    (CallRole.physician, S.in_call, END + dt.timedelta(minutes=31), "too_late"),
    (CallRole.physician, S.in_call, END + dt.timedelta(minutes=30), None),
])
def test_who_may_join_when(role: CallRole, status: S, now: dt.datetime, expected: str | None) -> None:
    assert rules.join_refusal(role=role, status=status, starts_at=START, ends_at=END, now=now, **WINDOW) == expected


def test_server_peers_get_credentials_of_their_own_and_never_a_public_server() -> None:
    settings = Settings(_env_file=None, stun_urls=["stun:turn.clinic.example:3478"],  # type: ignore[call-arg]
                        turn_urls=["turn:turn.clinic.example:3478?transport=udp"], turn_secret="s3cret")
    stun, relay = server_ice_servers(settings, "a1b2c3")
    assert stun.urls == ["stun:turn.clinic.example:3478"]
    assert relay.urls == ["turn:turn.clinic.example:3478?transport=udp"]
    assert relay.username is not None
    assert relay.username.endswith(":server-a1b2c3")  # coturn's log names the server's peer, not a person
    assert server_ice_servers(Settings(_env_file=None), "a1b2c3") == []  # type: ignore[call-arg]  # none public
