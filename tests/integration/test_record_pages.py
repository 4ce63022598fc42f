"""The medical record page and the recording player, for the patient and the staff who may see them."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pyotp
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from tests.factories import create_staff, register_patient
from tests.integration.test_pages import EN, RU, form_login
from tests.integration.test_recording_api import recorded_clinic


async def _sign_in(client: TestClient, email: str, otp: str | None = None) -> None:
    client.session.cookie_jar.clear()
    assert (await form_login(client, email, otp=otp)).status == 303


async def _page(client: TestClient, path: str, headers: dict[str, str] = EN) -> tuple[int, str]:
    response = await client.get(path, headers=headers, allow_redirects=False)
    return response.status, await response.text()


async def _actions(client: TestClient, action: str) -> list[AuditEntry]:
    async with client.app[keys.read_sessions]() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                           .order_by(AuditEntry.seq))).all())


async def test_the_physician_reads_the_record_and_plays_both_participants_on_one_timeline(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url)
    client, patient_id = clinic["client"], clinic["patient"].patient_id
    await _sign_in(client, clinic["doctor"].email)

    status, page = await _page(client, f"/clinic/patients/{patient_id}/record")
    assert status == 200
    assert 'data-testid="encounter"' in page
    assert 'data-state="complete"' in page
    assert f'href="/clinic/recordings/{clinic["recording"]}"' in page
    assert [(e.actor_role, e.object_id) for e in await _actions(client, "record.read")] == [("physician", patient_id)]

    status, player = await _page(client, f"/clinic/recordings/{clinic['recording']}")
    assert status == 200
    sources = re.findall(r'<video data-testid="video-(\w+)"[^>]* src="([^"]+)"', player)
    assert [(who, html.unescape(src)) for who, src in sources] == [
        (who, f"/api/v1/recordings/{clinic['recording']}/media?participant={who}") for who in ("physician", "patient")]
    for _, src in sources:  # the page's own session plays them (the API takes the page's cookie)
        media = await client.get(html.unescape(src), headers={"Range": "bytes=0-3"})
        assert media.status == 206
        assert await media.read() == b"\x1a\x45\xdf\xa3"  # a WebM's first bytes
    assert [(e.actor_role, e.object_id) for e in await _actions(client, "recording.opened")] == [
        ("physician", clinic["recording"])]
    russian = (await _page(client, f"/clinic/recordings/{clinic['recording']}", RU))[1]
    assert "Запись консультации" in russian


async def test_the_patient_sees_their_record_and_plays_only_when_the_clinic_allows(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    await _sign_in(client, clinic["patient"].email)
    status, page = await _page(client, "/my/record")
    assert status == 200
    assert 'data-state="complete"' in page
    assert "/my/recordings/" not in page  # not allowed by default: no link ...
    assert (await _page(client, f"/my/recordings/{clinic['recording']}"))[0] == 404  # ... and no page
    assert (await _page(client, f"/clinic/patients/{clinic['patient'].patient_id}/record"))[0] == 404


async def test_nobody_else_opens_the_record_or_the_player_and_an_admin_states_a_reason(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url)
    client, patient_id = clinic["client"], clinic["patient"].patient_id
    other_doctor = await create_staff(client, Role.physician, signed_in=False)
    expert = await create_staff(client, Role.qa_expert, signed_in=False)
    stranger = await register_patient(client, full_name="Чужой Пациент", signed_in=False)
    for account in (other_doctor, expert):
        await _sign_in(client, account.email)
        assert (await _page(client, f"/clinic/recordings/{clinic['recording']}"))[0] == 404
    await _sign_in(client, other_doctor.email)
    assert (await _page(client, f"/clinic/patients/{patient_id}/record"))[0] == 404
    await _sign_in(client, stranger.email)
    assert (await _page(client, f"/my/recordings/{clinic['recording']}"))[0] == 404

    boss = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    await _sign_in(client, boss.email, otp=pyotp.TOTP(boss.totp_secret or "").now())
    status, ask = await _page(client, f"/clinic/recordings/{clinic['recording']}")
    assert status == 200
    assert 'data-testid="recording-reason"' in ask
    status, player = await _page(client, f"/clinic/recordings/{clinic['recording']}?reason=complaint%20no.%207")
    assert status == 200
    assert "participant=patient&amp;reason=complaint%20no.%207" in player
