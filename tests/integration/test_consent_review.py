"""Regressions found in review of consent: an undelivered code, a cancelled booking's physician, headings the PDF
cannot lay out, oversized upload forms, a double-submitted draft, and staff opening a paper document."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from aiohttp import FormData

from consent.models import ConsentTemplate, TemplateStatus
from server import keys
from server.auth.models import Role
from tests.factories import admin, create_staff
from tests.integration.test_consent_api import outbox_code, prepare, send_code, sign
from tests.integration.test_consent_pages import browser, page
from tests.integration.test_pages import EN, form_token
from tests.scheduling_helpers import booked_clinic
from tests.services import free_port


async def test_an_undelivered_code_leaves_the_one_already_sent_working(aiohttp_client: Any, tmp_path: Path,
                                                                      database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, consented=False,
                                 smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    client, patient = clinic["client"], clinic["patient"]
    document = await prepare(client, patient)
    assert (await send_code(client, patient, document["id"], channel="sms")).status == 202
    sms_code = outbox_code(client, "sms")
    assert (await send_code(client, patient, document["id"], channel="email")).status == 503  # SMTP is down
    assert (await sign(client, patient, document["id"], sms_code)).status == 201


async def test_a_cancelled_bookings_physician_sees_no_consents(aiohttp_client: Any, tmp_path: Path,
                                                              database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await browser(client, doctor)
    before = await page(client, f"/clinic/consultations/{consultation}")
    assert 'data-testid="consents"' in before
    cancelled = await client.post(f"/api/v1/consultations/{consultation}/cancel", headers=doctor.auth)
    assert cancelled.status == 200
    after = await page(client, f"/clinic/consultations/{consultation}")
    assert 'data-testid="consents"' not in after
    assert "/api/v1/consents/" not in after


async def test_a_heading_the_pdf_cannot_lay_out_is_refused(aiohttp_client: Any, tmp_path: Path,
                                                          database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    boss = await admin(client)
    response = await client.post("/api/v1/consent-templates", headers=boss.auth, json={
        "purpose": "recording", "title_ru": "Т", "body_ru": "Текст\n\n## " + "слово " * 100, "title_en": "T",
        "body_en": "Text"})
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "body_ru"


async def test_upload_forms_refuse_a_flood_of_fields(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, consented=False)
    client, patient, doctor = clinic["client"], clinic["patient"], clinic["doctor"]
    made = await client.post("/api/v1/consent-documents", headers=doctor.auth,
                             json={"purpose": "recording", "patient_id": patient.patient_id})
    document = await made.json()
    await browser(client, doctor)
    text = await page(client, f"/clinic/consent-documents/{document['id']}")
    form = FormData()
    form.add_field("csrf_token", form_token(text))
    for index in range(60):
        form.add_field(f"f{index}", "x" * 1000)
    form.add_field("scan", io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), filename="scan.png",
                   content_type="image/png")
    response = await client.post(f"/clinic/consent-documents/{document['id']}/paper", data=form, headers=EN)
    assert response.status == 413


async def test_a_double_submitted_draft_is_one_draft(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    boss = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    await browser(client, boss)
    listing = await page(client, "/clinic/consent-texts")
    first = await client.post("/clinic/consent-texts/recording/drafts", headers=EN, allow_redirects=False,
                              data={"csrf_token": form_token(listing)})
    second = await client.post("/clinic/consent-texts/recording/drafts", headers=EN, allow_redirects=False,
                               data={"csrf_token": form_token(listing)})
    assert first.headers["Location"] == second.headers["Location"]
    async with client.app[keys.read_sessions]() as session:
        from sqlalchemy import func, select

        drafts = await session.scalar(select(func.count()).select_from(ConsentTemplate).where(
            ConsentTemplate.status == TemplateStatus.draft))
    assert drafts == 1


async def test_staff_opening_an_unsigned_paper_document_is_in_the_access_log(aiohttp_client: Any, tmp_path: Path,
                                                                            database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, consented=False)
    client, patient, doctor = clinic["client"], clinic["patient"], clinic["doctor"]
    made = await client.post("/api/v1/consent-documents", headers=doctor.auth,
                             json={"purpose": "recording", "patient_id": patient.patient_id})
    document = await made.json()
    await browser(client, doctor)
    await page(client, f"/clinic/consent-documents/{document['id']}")
    log = await (await client.get("/api/v1/me/access-log?limit=50", headers=patient.auth)).json()
    assert "consent_document.read" in {entry["action"] for entry in log["items"]}
