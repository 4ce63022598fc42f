"""Joining a call: who gets a ticket when, the ICE servers handed out, and tickets that work exactly once."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from server import keys
from server.db.engine import transaction
from signaling import tickets
from tests.factories import register_patient
from tests.scheduling_helpers import benign_answers, booked_clinic

DEVICE = {"camera": True, "microphone": True, "speaker": True}


async def _check_in(clinic: dict[str, Any]) -> Any:
    answers = benign_answers(clinic["catalogue"]["checkin"])
    return await clinic["client"].post(f"/api/v1/consultations/{clinic['consultation']}/check-in",
                                       headers=clinic["patient"].auth,
                                       json={"answers": answers, "device_check": DEVICE})


async def _join(client: Any, account: Any, consultation: str) -> Any:
    return await client.post(f"/api/v1/consultations/{consultation}/join", headers=account.auth)


async def test_physician_then_admitted_patient_get_single_use_tickets(aiohttp_client: Any, tmp_path: Path,
                                                                      database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client, patient, doctor, consultation = clinic["client"], clinic["patient"], clinic["doctor"], \
        clinic["consultation"]
    early = await _join(client, doctor, consultation)
    assert early.status == 409
    assert (await early.json())["code"] == "call_not_open"  # nobody is waiting yet
    checked = await _check_in(clinic)
    assert checked.status == 200
    not_admitted = await _join(client, patient, consultation)
    assert not_admitted.status == 409
    assert (await not_admitted.json())["code"] == "not_admitted"
    doctor_ticket = await _join(client, doctor, consultation)
    assert doctor_ticket.status == 201, await doctor_ticket.text()
    body = await doctor_ticket.json()
    assert body["role"] == "physician"
    assert body["ws_url"].endswith("/api/v1/signaling")
    assert body["recording"] is True
    assert body["ice_servers"] == []  # nothing configured: no public STUN server sneaks in
    assert (await client.post(f"/api/v1/consultations/{consultation}/admit", headers=doctor.auth)).status == 200
    patient_ticket = await _join(client, patient, consultation)
    assert patient_ticket.status == 201
    stranger = await register_patient(client)
    assert (await _join(client, stranger, consultation)).status == 404

    now = dt.datetime.now(dt.UTC)
    token = body["ticket"]
    async with transaction(client.app[keys.sessions]) as session:
        assert await tickets.redeem(session, token, consultation_id=uuid.uuid4(), now=now) is None  # another call
        claimed = await tickets.redeem(session, token, consultation_id=uuid.UUID(consultation), now=now)
        assert claimed is not None
        assert claimed.role.value == "physician"
        assert await tickets.redeem(session, token, consultation_id=uuid.UUID(consultation), now=now) is None
        late = (await patient_ticket.json())["ticket"]
        assert await tickets.redeem(session, late, consultation_id=uuid.UUID(consultation),
                                    now=now + dt.timedelta(seconds=31)) is None  # expired
        assert await tickets.redeem(session, "x" * 5, consultation_id=uuid.UUID(consultation), now=now) is None


async def test_turn_credentials_come_with_the_ticket(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, turn_secret="test-secret",
                                 turn_urls=["turn:127.0.0.1:3478?transport=udp"], stun_urls=["stun:127.0.0.1:3478"])
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    checked = await _check_in(clinic)
    assert checked.status == 200
    body = await (await _join(client, doctor, consultation)).json()
    stun, relay = body["ice_servers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"], "username": None, "credential": None}
    expiry, _, participant = relay["username"].partition(":")
    assert int(expiry) > dt.datetime.now(dt.UTC).timestamp() + 3000
    assert uuid.UUID(participant)  # the ticket's id: coturn's logs name the participant, not the person
    assert relay["credential"]
