"""Admission control: a node hosts at most TELEMED_MEDIA_MAX_CALLS calls; a call beyond it is refused with a
clear problem before it starts, and the calls in progress keep taking their participants back."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server import keys
from server.audit.models import AuditEntry
from tests.integration.test_signaling_call import (
    another_consultation,
    join,
    keep_ice_on_loopback,
    live_clinic,
    open_socket,
)


async def test_call_beyond_capacity_is_refused_and_calls_in_progress_are_not(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, media_max_calls=1)
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    _, second = await another_consultation(clinic, "Анна Вторая", admitted=False)  # the physician may open it

    first_call = await join(client, doctor, consultation)
    refused = await client.post(f"/api/v1/consultations/{second}/join", headers=doctor.auth)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "30"
    problem = await refused.json()
    assert problem["code"] == "media_capacity"
    assert refused.headers["Content-Type"].startswith("application/problem+json")

    # The call in progress still takes its participants, and rejoins.
    patient = await join(client, clinic["patient"], consultation)
    await patient.close()
    patient = await join(client, clinic["patient"], consultation)

    # Once it ends, the place is free again.
    await first_call.send({"type": "end"})
    assert await first_call.closed() == 1000
    assert await patient.closed() == 1000
    again = await client.post(f"/api/v1/consultations/{second}/join", headers=doctor.auth)
    assert again.status == 201, await again.text()


async def test_call_started_meanwhile_takes_the_last_place_and_the_socket_says_try_later(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, media_max_calls=1)
    client, doctor = clinic["client"], clinic["doctor"]
    _, second = await another_consultation(clinic, "Анна Вторая", admitted=False)  # the physician may open it
    # Both tickets are issued while no call runs; the first socket to join takes the only place.
    response = await client.post(f"/api/v1/consultations/{second}/join", headers=doctor.auth)
    assert response.status == 201
    late_ticket = (await response.json())["ticket"]
    first_call = await join(client, clinic["patient"], clinic["consultation"])

    late = await open_socket(client)
    await late.send({"type": "join", "consultation_id": second, "ticket": late_ticket})
    assert await late.closed() == 1013  # RFC 6455: try again later
    assert [event["code"] for event in late.of("error")] == ["media_capacity"]
    async with client.app[keys.read_sessions]() as session:
        refusal = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "call.join_refused"))).one()
    assert refusal.detail == {"role": "physician", "code": "media_capacity"}
    assert str(refusal.actor_user_id) == doctor.user_id
    assert not first_call.of("participant_joined")  # the refused call never came near the other one
    assert client.app[keys.calls].room(uuid.UUID(second)) is None
    await first_call.close()
