"""The consent pages over HTTP: what a patient signs and how (a real code from the outbox), withdrawing, the
check-in gate, the physician's queue and consultation, paper consents with a scan, and the admins' texts."""

from __future__ import annotations

import email
import email.policy
import hashlib
import html
import io
import re
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from consent import templates
from consent.models import Consent, ConsentDocument, ConsentPurpose, SignatureLevel
from consent.services import Withdrawal
from server import keys
from server.app import create_app
from server.audit.services import AuditContext
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.scheduling.models import Consultation, ConsultationStatus
from tests.conftest import make_settings
from tests.consent_helpers import sign_consents
from tests.factories import Account, create_staff, register_patient
from tests.integration.test_pages import EN, RU, form_login, form_token, page_token, register_form
from tests.pki import Pki, make_pki, sign_document
from tests.scheduling_helpers import (
    benign_answers,
    booked_clinic,
    booking,
    free_slot,
    physician_on_duty,
    seed_catalogue,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # what the scan check reads: the PNG signature


# --- helpers -----------------------------------------------------------------------------------------------------


async def page(client: TestClient, path: str, *, status: int = 200, headers: dict[str, str] = EN) -> str:
    response = await client.get(path, headers=headers, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (response.status, text)
    assert response.content_type == "text/html"
    return text


async def browser(client: TestClient, account: Account) -> None:
    """Sign `account` in through the login form, as a browser (a second factor's code when it has one)."""
    client.session.cookie_jar.clear()
    otp = pyotp.TOTP(account.totp_secret).now() if account.totp_secret else None
    response = await form_login(client, account.email, otp=otp)
    assert response.status == 303, await response.text()
    client.session.cookie_jar.update_cookies({"telemed_lang": "en"}, client.make_url("/"))


def hidden(text: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', text)
    assert found, f"no hidden field {name}"
    return html.unescape(found.group(1))


def by_testid(text: str, name: str) -> str:
    """The text of the first element with this data-testid (tags stripped)."""
    found = re.search(rf'data-testid="{re.escape(name)}"[^>]*>(.*?)</', text, re.S)
    assert found, f"no element {name}"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def newest_code(client: TestClient) -> str:
    """The code in the newest signing e-mail the development outbox holds (.eml files, named by time)."""
    folder = client.app[keys.settings].outbox_dir / "email"
    for path in sorted(folder.glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if "code" in str(message["Subject"]).lower() or "код" in str(message["Subject"]).lower():
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            found = re.search(r"\b(\d{6})\b", body.get_content())
            assert found, body.get_content()
            return found.group(1)
    raise AssertionError("no signing code in the outbox")


async def ask_code(client: TestClient, purpose: str, *, next_path: str | None = None,
                   headers: dict[str, str] = EN) -> str:
    """Open the signing page and ask for a code by e-mail; returns the page that asks for the code."""
    query = f"?next={next_path}" if next_path else ""
    text = await page(client, f"/my/consents/{purpose}{query}", headers=headers)
    response = await client.post(f"/my/consents/{purpose}/code", headers=headers, allow_redirects=False, data={
        "csrf_token": form_token(text), "document_id": hidden(text, "document_id"), "channel": "email",
        "next": hidden(text, "next")})
    assert response.status == 303, await response.text()
    assert response.headers["Location"].endswith("sent=email#code")
    return await page(client, response.headers["Location"].split("#")[0], headers=headers)


async def enter_code(client: TestClient, purpose: str, text: str, code: str, *,
                     headers: dict[str, str] = EN) -> Any:
    return await client.post(f"/my/consents/{purpose}/sign", headers=headers, allow_redirects=False, data={
        "csrf_token": form_token(text), "document_id": hidden(text, "document_id"), "next": hidden(text, "next"),
        "sent": "email", "code": code})


async def sign_through_pages(client: TestClient, purpose: str, *, next_path: str | None = None) -> str:
    """Ask for a code, take it from the outbox and enter it; returns the confirmation page's address."""
    text = await ask_code(client, purpose, next_path=next_path)
    response = await enter_code(client, purpose, text, newest_code(client))
    assert response.status == 303, await response.text()
    return str(response.headers["Location"])


async def consents_of(client: TestClient, patient: Account) -> list[Consent]:
    async with client.app[keys.read_sessions]() as session:
        found = await session.scalars(select(Consent).where(Consent.patient_id == uuid.UUID(patient.patient_id or "")))
        return list(found.all())


def checkin_form(clinic: dict[str, Any], text: str) -> dict[str, str]:
    answers = benign_answers(clinic["catalogue"]["checkin"])
    sent = {f"answers.{key}": ("yes" if value else "no") if isinstance(value, bool) else str(value)
            for key, value in answers.items()}
    return {"csrf_token": form_token(text), **sent, "camera": "true", "microphone": "true", "speaker": "true",
            "browser": "Chrome", "problems": ""}


async def status_of(client: TestClient, consultation_id: str) -> ConsultationStatus:
    async with client.app[keys.read_sessions]() as session:
        found = await session.get(Consultation, uuid.UUID(consultation_id))
        assert found is not None
        return found.status


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A patient booked into the next slot (check-in open) who has signed nothing, signed in in the browser."""
    found = await booked_clinic(aiohttp_client, tmp_path, database_url, patient_name="Anna Smirnova", consented=False)
    await browser(found["client"], found["patient"])
    return found


async def unrecorded_clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A clinic that records but lets a patient who refuses recording have an unrecorded consultation."""
    client: TestClient = await aiohttp_client(create_app(make_settings(
        tmp_path, database_url, checkin_opens_minutes=60, recording_required=False)))
    catalogue = await seed_catalogue(client)
    doctor, physician_id = await physician_on_duty(client)
    patient = await register_patient(client, full_name="Boris Unrecorded")
    starts_at = await free_slot(client, patient, physician_id)
    made = await client.post("/api/v1/consultations", headers=patient.auth,
                             json=booking(physician_id, starts_at, benign_answers(catalogue["respiratory"])))
    assert made.status == 201, await made.text()
    return {"client": client, "catalogue": catalogue, "doctor": doctor, "patient": patient,
            "consultation": (await made.json())["id"]}


# --- my consents -------------------------------------------------------------------------------------------------


async def test_patient_sees_what_to_sign(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    home = await page(client, "/")
    assert 'href="/my/consents"' in home  # in the navigation
    text = await page(client, "/my/consents")
    assert 'data-testid="not-all-signed"' in text
    for purpose in ("telemedicine_care", "personal_data", "recording"):
        assert f'data-testid="purpose-{purpose}" data-problem="missing"' in text
        assert f'href="/my/consents/{purpose}" data-testid="sign-{purpose}"' in text
    assert text.count("Not signed yet") == 3
    assert 'data-testid="nothing-signed"' in text
    detail = await page(client, f"/my/consultations/{clinic['consultation']}")
    assert 'href="/my/consents" data-testid="consents-link"' in detail


async def test_patient_signs_with_a_code_end_to_end(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    text = await page(client, "/my/consents/telemedicine_care")
    # The whole text, as the PDF has it: a title, headings, bullets, paragraphs; and the PDF with its hash.
    document = re.search(r'<article class="card document" lang="en".*?</article>', text, re.S)
    assert document
    assert "<h1 id=\"document-title\">" in document.group(0)
    assert "<h2>" in document.group(0)
    assert "<li>" in document.group(0)
    async with client.app[keys.read_sessions]() as session:
        stored = await session.get(ConsentDocument, uuid.UUID(hidden(text, "document_id")))
        assert stored is not None
    assert by_testid(text, "document-sha256") == stored.sha256 == hashlib.sha256(stored.pdf).hexdigest()
    pdf = await client.get(f"/api/v1/consent-documents/{stored.id}/pdf")  # the link works with the cookie
    assert pdf.status == 200
    assert (await pdf.read()).startswith(b"%PDF-")
    # The code goes by e-mail; the page says where (masked) and asks for it.
    asking = await ask_code(client, "telemedicine_care")
    assert "We have sent a 6-digit code to p***@example.org" in asking
    assert 'inputmode="numeric" autocomplete="one-time-code"' in asking
    response = await enter_code(client, "telemedicine_care", asking, newest_code(client))
    assert response.status == 303, await response.text()
    assert re.fullmatch(r"/my/consents/signed/[0-9a-f-]{36}\?next=/my/consents", response.headers["Location"])
    done = await page(client, response.headers["Location"])
    assert "Thank you, the document is signed" in done
    (consent,) = await consents_of(client, clinic["patient"])
    assert consent.level is SignatureLevel.simple
    assert consent.document_id == stored.id
    assert by_testid(done, "document-sha256") == consent.document_sha256
    assert f'href="/api/v1/consents/{consent.id}/pdf"' in done
    signed_pdf = await client.get(f"/api/v1/consents/{consent.id}/pdf")
    assert hashlib.sha256(await signed_pdf.read()).hexdigest() == consent.document_sha256
    assert 'href="/my/consents" data-testid="continue"' in done
    mine = await page(client, "/my/consents")
    assert 'data-testid="purpose-telemedicine_care" data-problem="none"' in mine
    assert "Signed on" in mine
    assert "(version 1)" in mine
    # Coming back to a signed document says so instead of offering to sign it again.
    again = await page(client, "/my/consents/telemedicine_care")
    assert 'data-testid="already-signed"' in again
    assert 'data-testid="code-form"' not in again


async def test_a_wrong_code_says_how_many_tries_are_left(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    asking = await ask_code(client, "personal_data")
    right = newest_code(client)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    refused = await enter_code(client, "personal_data", asking, wrong)
    assert refused.status == 422
    text = await refused.text()
    assert "The code is not right. Tries left: 4." in text
    assert 'data-testid="code-form"' in text  # the code can simply be typed again
    badly_typed = await enter_code(client, "personal_data", text, "12")
    assert badly_typed.status == 422
    assert "Please enter the 6 digits of the code." in await badly_typed.text()  # not a try
    again = await enter_code(client, "personal_data", text, wrong)
    assert "Tries left: 3." in await again.text()
    assert (await enter_code(client, "personal_data", text, right[:3] + " " + right[3:])).status == 303


async def test_the_last_wrong_try_and_an_unrequested_code_explain_themselves(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    text = await page(client, "/my/consents/recording")
    unrequested = await enter_code(client, "recording", text, "123456")
    assert "Please ask for a code first." in await unrequested.text()
    asking = await ask_code(client, "recording")
    wrong = f"{(int(newest_code(client)) + 1) % 1_000_000:06d}"
    for _ in range(client.app[keys.consent].otp_attempts):
        last = await enter_code(client, "recording", asking, wrong)
    assert "that was the last try" in await last.text()
    exhausted = await enter_code(client, "recording", asking, newest_code(client))
    assert "Too many wrong tries with this code" in await exhausted.text()


async def test_the_code_can_go_by_sms_and_too_many_codes_are_refused(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    text = await page(client, "/my/consents/personal_data")
    assert 'value="sms"' in text
    assert "+7******1122" in text
    form = {"csrf_token": form_token(text), "document_id": hidden(text, "document_id"), "next": "/my/consents"}
    by_sms = await client.post("/my/consents/personal_data/code", headers=EN, allow_redirects=False,
                               data={**form, "channel": "sms"})
    assert by_sms.headers["Location"].endswith("sent=sms#code")
    asking = await page(client, by_sms.headers["Location"].split("#")[0])
    assert "We have sent a 6-digit code to +7******1122" in asking
    assert list((client.app[keys.settings].outbox_dir / "sms").iterdir())  # the development SMS outbox
    for _ in range(client.app[keys.consent].otp_per_hour - 1):
        response = await client.post("/my/consents/personal_data/code", headers=EN, allow_redirects=False,
                                     data={**form, "channel": "email"})
        assert response.status == 303
    refused = await client.post("/my/consents/personal_data/code", headers=EN, allow_redirects=False,
                                data={**form, "channel": "email"})
    assert refused.status == 429
    assert "Too many codes were sent for this document." in await refused.text()


async def test_a_text_replaced_while_the_patient_reads_it_is_shown_again(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    text = await page(client, "/my/consents/telemedicine_care")
    async with transaction(client.app[keys.sessions]) as session:  # an admin publishes version 2 meanwhile
        current = await templates.current(session, ConsentPurpose.telemedicine_care)
        draft = await templates.create_draft(session, purpose=current.purpose, title_ru=current.title_ru,
                                             body_ru=current.body_ru + "\n\nНовый абзац.", title_en=current.title_en,
                                             body_en=current.body_en + "\n\nA new paragraph.",
                                             ctx=AuditContext(actor_role="test"), now=utcnow())
        await templates.publish(session, template_id=draft.id, material=True, ctx=AuditContext(actor_role="test"),
                                now=utcnow())
    response = await client.post("/my/consents/telemedicine_care/code", headers=EN, allow_redirects=False, data={
        "csrf_token": form_token(text), "document_id": hidden(text, "document_id"), "channel": "email"})
    assert response.status == 409
    again = await response.text()
    assert "The clinic has just published a new version of this text." in again
    assert "A new paragraph." in again
    assert hidden(again, "document_id") != hidden(text, "document_id")


async def test_withdraw_takes_two_clicks_and_changes_the_status(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_consents(client, clinic["patient"])
    heard: list[Withdrawal] = []

    async def listener(event: Withdrawal) -> None:
        heard.append(event)

    client.app[keys.consent_withdrawals].subscribe(listener)
    mine = await page(client, "/my/consents")
    assert 'data-testid="all-signed"' in mine
    recording = next(c for c in await consents_of(client, clinic["patient"]) if c.purpose is ConsentPurpose.recording)
    assert f'href="/my/consents/signed/{recording.id}/withdraw" data-testid="withdraw"' in mine
    confirm = await page(client, f"/my/consents/signed/{recording.id}/withdraw")  # the first click asks
    assert "This clinic records every teleconsultation" in by_testid(confirm, "meaning")
    assert [c.withdrawn_at for c in await consents_of(client, clinic["patient"])] == [None, None, None]
    response = await client.post(f"/my/consents/signed/{recording.id}/withdraw", headers=EN, allow_redirects=False,
                                 data={"csrf_token": form_token(confirm)})
    assert response.status == 303
    assert response.headers["Location"] == "/my/consents?withdrawn=recording"
    assert [(e.purpose, e.patient_id) for e in heard] == [(ConsentPurpose.recording, recording.patient_id)]
    after = await page(client, response.headers["Location"])
    assert 'data-testid="withdrawn-notice"' in after
    assert 'data-testid="purpose-recording" data-problem="withdrawn"' in after
    assert "You withdrew this consent on" in after
    assert 'data-testid="not-all-signed"' in after
    # The confirmation of a consent already withdrawn leads back to the list.
    assert (await client.get(f"/my/consents/signed/{recording.id}/withdraw", allow_redirects=False)).status == 302


async def test_withdrawing_recording_where_it_is_optional_says_consultations_are_unrecorded(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await unrecorded_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    await sign_consents(client, clinic["patient"])
    await browser(client, clinic["patient"])
    mine = await page(client, "/my/consents")
    assert "Optional: without it, your consultations are not recorded." in mine
    recording = next(c for c in await consents_of(client, clinic["patient"]) if c.purpose is ConsentPurpose.recording)
    confirm = await page(client, f"/my/consents/signed/{recording.id}/withdraw")
    assert "Your future consultations will not be recorded." in by_testid(confirm, "meaning")


# --- the check-in gate -------------------------------------------------------------------------------------------


async def test_check_in_page_lists_missing_consents_and_check_in_works_after_signing(clinic: dict[str, Any]) -> None:
    client, consultation_id = clinic["client"], clinic["consultation"]
    here = f"/my/consultations/{consultation_id}/waiting-room"
    text = await page(client, here)
    assert 'data-testid="consents-needed"' in text
    assert 'data-testid="checkin-form"' not in text  # no questions before the documents
    for purpose in ("telemedicine_care", "personal_data", "recording"):
        assert f'href="/my/consents/{purpose}?next={here}" data-testid="sign-link-{purpose}"' in text
    # A check-in posted anyway (a stale tab) is refused with the same list.
    refused = await client.post(f"/my/consultations/{consultation_id}/check-in", headers=EN, allow_redirects=False,
                                data=checkin_form(clinic, text))
    assert refused.status == 409
    assert 'data-testid="consents-needed"' in await refused.text()
    assert await status_of(client, consultation_id) is ConsultationStatus.scheduled
    # Each document's page leads back to the waiting room once signed.
    location = await sign_through_pages(client, "telemedicine_care", next_path=here)
    done = await page(client, location)
    assert f'href="{here}" data-testid="continue"' in done
    assert 'data-testid="sign-link-telemedicine_care"' not in done  # what is still to sign: the other two
    assert f'href="/my/consents/personal_data?next={here}"' in done
    await sign_through_pages(client, "personal_data", next_path=here)
    still = await page(client, here)
    assert 'data-testid="sign-link-recording"' in still
    assert 'data-testid="sign-link-personal_data"' not in still
    await sign_through_pages(client, "recording", next_path=here)
    ready = await page(client, here)
    assert 'data-testid="consents-needed"' not in ready
    assert 'data-testid="checkin-form"' in ready
    response = await client.post(f"/my/consultations/{consultation_id}/check-in", headers=EN, allow_redirects=False,
                                 data=checkin_form(clinic, ready))
    assert response.status == 303, await response.text()
    assert await status_of(client, consultation_id) is ConsultationStatus.waiting


async def test_next_only_leads_to_this_site(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        text = await page(client, f"/my/consents/telemedicine_care?next={target}")
        assert hidden(text, "next") == "/"


# --- someone else's --------------------------------------------------------------------------------------------


async def test_another_patients_document_and_consent_are_not_found(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    other = await register_patient(client, full_name="Olga Other")
    (consent,) = await sign_consents(client, other, (ConsentPurpose.telemedicine_care,))
    text = await page(client, "/my/consents/personal_data")  # a page of mine, for its CSRF token
    token = form_token(text)
    for path in (f"/my/consents/signed/{consent.id}", f"/my/consents/signed/{consent.id}/withdraw",
                 "/my/consents/signed/not-an-id", "/my/consents/unknown_purpose"):
        assert 'data-testid="error-page"' in await page(client, path, status=404)
    withdraw = await client.post(f"/my/consents/signed/{consent.id}/withdraw", headers=EN, allow_redirects=False,
                                 data={"csrf_token": token})
    assert withdraw.status == 404
    for step, extra in (("code", {"channel": "email"}), ("sign", {"code": "123456"})):
        response = await client.post(f"/my/consents/personal_data/{step}", headers=EN, allow_redirects=False,
                                     data={"csrf_token": token, "document_id": str(consent.document_id), **extra})
        assert response.status == 404, step
    assert (await client.get(f"/api/v1/consent-documents/{consent.document_id}/pdf")).status == 404
    assert (await consents_of(client, other))[0].withdrawn_at is None


async def test_staff_pages_of_consents_are_not_for_patients_and_forms_need_csrf(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    for path in ("/clinic/consent-texts", f"/clinic/consent-documents/{uuid.uuid4()}"):
        await page(client, path, status=404)
    await page_token(client, "/my/consents")
    for path in ("/my/consents/telemedicine_care/code", "/my/consents/telemedicine_care/sign",
                 f"/my/consents/signed/{uuid.uuid4()}/withdraw"):
        response = await client.post(path, data={"csrf_token": "stale"}, headers=EN, allow_redirects=False)
        assert response.status == 403, path


# --- staff ---------------------------------------------------------------------------------------------------------


async def test_the_queue_shows_each_patients_consent_status(clinic: dict[str, Any]) -> None:
    client, patient = clinic["client"], clinic["patient"]
    await sign_consents(client, patient)
    checked_in = await client.post(f"/api/v1/consultations/{clinic['consultation']}/check-in", headers=patient.auth,
                                   json={"answers": benign_answers(clinic["catalogue"]["checkin"]),
                                         "device_check": {"camera": True, "microphone": True, "speaker": True}})
    assert checked_in.status == 200, await checked_in.text()
    await browser(client, clinic["doctor"])
    queue = await page(client, "/clinic/waiting-room")
    assert "Consents: all signed" in by_testid(queue, "consent-status")
    # The patient withdraws a consent while waiting: the queue says what is missing, and admitting explains why not.
    recording = next(c for c in await consents_of(client, patient) if c.purpose is ConsentPurpose.recording)
    withdrawn = await client.post(f"/api/v1/consents/{recording.id}/withdraw", headers=patient.auth)
    assert withdrawn.status == 200
    fragment = await page(client, "/clinic/waiting-room/list")
    assert "Consents missing: Recording of consultations" in by_testid(fragment, "consent-missing")
    refused = await client.post(f"/clinic/consultations/{clinic['consultation']}/admit", headers=EN,
                                allow_redirects=False, data={"csrf_token": form_token(queue), "from": "queue"})
    assert refused.status == 409
    assert "has not signed the consents the clinic requires" in await refused.text()


async def test_the_queue_says_a_patient_without_recording_consent_will_not_be_recorded(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await unrecorded_clinic(aiohttp_client, tmp_path, database_url)
    client, patient = clinic["client"], clinic["patient"]
    await sign_consents(client, patient, (ConsentPurpose.telemedicine_care, ConsentPurpose.personal_data))
    await browser(client, patient)
    checkin = await page(client, f"/my/consultations/{clinic['consultation']}/waiting-room")
    assert 'data-testid="unrecorded"' in checkin
    assert 'data-testid="checkin-form"' in checkin
    response = await client.post(f"/my/consultations/{clinic['consultation']}/check-in", headers=EN,
                                 allow_redirects=False, data=checkin_form(clinic, checkin))
    assert response.status == 303, await response.text()
    await browser(client, clinic["doctor"])
    queue = await page(client, "/clinic/waiting-room")
    assert "No consent to recording: will not be recorded" in by_testid(queue, "consent-unrecorded")


async def test_the_consultation_page_lists_the_patients_consents_with_their_files(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    signed = await sign_consents(client, clinic["patient"])
    await browser(client, clinic["doctor"])
    text = await page(client, f"/clinic/consultations/{clinic['consultation']}")
    assert "Consents: all signed" in by_testid(text, "consent-ok")
    for consent in signed:
        assert f'href="/api/v1/consents/{consent.id}/pdf"' in text
        assert f'href="/api/v1/consents/{consent.id}/verification"' in text
    verification = await client.get(f"/api/v1/consents/{signed[0].id}/verification")  # with the page's cookie
    assert verification.status == 200
    assert (await verification.json())["ok"] is True
    assert 'data-testid="paper-prepare"' not in text  # nothing left to sign


async def test_staff_prepare_a_paper_consent_and_upload_the_signed_scan(clinic: dict[str, Any]) -> None:
    client, patient = clinic["client"], clinic["patient"]
    await sign_consents(client, patient, (ConsentPurpose.telemedicine_care, ConsentPurpose.recording))
    await browser(client, clinic["doctor"])
    detail_path = f"/clinic/consultations/{clinic['consultation']}"
    detail = await page(client, detail_path)
    assert "Consents missing: Processing of personal data" in by_testid(detail, "consent-missing")
    assert '<option value="en" selected>' in detail  # the patient's own language
    prepared = await client.post(f"/clinic/patients/{patient.patient_id}/consent-documents", headers=EN,
                                 allow_redirects=False, data={"csrf_token": form_token(detail), "back": detail_path,
                                                              "purpose": "personal_data", "language": "ru"})
    assert prepared.status == 303, await prepared.text()
    paper_path = prepared.headers["Location"]
    document_id = re.search(r"/clinic/consent-documents/([0-9a-f-]{36})", paper_path)
    assert document_id
    paper = await page(client, paper_path)
    assert by_testid(paper, "patient-name") == "Anna Smirnova"
    assert f'href="/api/v1/consent-documents/{document_id.group(1)}/pdf" data-testid="print-pdf"' in paper
    printed = await client.get(f"/api/v1/consent-documents/{document_id.group(1)}/pdf")
    assert (await printed.read()).startswith(b"%PDF-")

    async def upload(data: bytes, note: str = "Signed at the reception, passport checked") -> Any:
        form = FormData()
        form.add_field("csrf_token", form_token(paper))
        form.add_field("back", detail_path)
        form.add_field("note", note)
        form.add_field("scan", data, filename="scan.png", content_type="image/png")
        return await client.post(f"/clinic/consent-documents/{document_id.group(1)}/paper", data=form, headers=EN,
                                 allow_redirects=False)

    stale = FormData()
    stale.add_field("csrf_token", "stale")
    stale.add_field("scan", PNG, filename="scan.png", content_type="image/png")
    forged = await client.post(f"/clinic/consent-documents/{document_id.group(1)}/paper", data=stale, headers=EN,
                               allow_redirects=False)
    assert forged.status == 403
    not_a_scan = await upload(b"GIF89a not what we take")
    assert not_a_scan.status == 415
    assert "The scan must be a PDF, JPEG or PNG file." in await not_a_scan.text()
    done = await upload(PNG)
    assert done.status == 303, await done.text()
    after = await page(client, done.headers["Location"])
    assert 'data-testid="paper-signed"' in after
    paper_consent = next(c for c in await consents_of(client, patient) if c.purpose is ConsentPurpose.personal_data)
    assert paper_consent.level is SignatureLevel.in_person
    assert paper_consent.signature_media_type == "image/png"
    assert paper_consent.signature_blob == PNG
    assert paper_consent.evidence["note"] == "Signed at the reception, passport checked"
    assert paper_consent.language == "ru"
    scan = await client.get(f"/api/v1/consents/{paper_consent.id}/signature")
    assert await scan.read() == PNG
    assert "Consents: all signed" in by_testid(await page(client, detail_path), "consent-ok")
    twice = await upload(PNG)
    assert twice.status == 409
    assert "This document is already signed." in await twice.text()


async def test_a_scan_over_the_clinics_limit_is_refused_unread(aiohttp_client: Any, tmp_path: Path,
                                                               database_url: str) -> None:
    found = await booked_clinic(aiohttp_client, tmp_path, database_url, consented=False)
    client = found["client"]
    limit = client.app[keys.consent].scan_max_bytes
    await browser(client, found["doctor"])
    detail = await page(client, f"/clinic/consultations/{found['consultation']}")
    prepared = await client.post(f"/clinic/patients/{found['patient'].patient_id}/consent-documents", headers=EN,
                                 allow_redirects=False, data={"csrf_token": form_token(detail),
                                                              "purpose": "recording", "language": "en"})
    form = FormData()
    form.add_field("csrf_token", form_token(detail))
    form.add_field("scan", io.BytesIO(PNG + b"\x00" * limit), filename="scan.png", content_type="image/png")
    response = await client.post(prepared.headers["Location"].split("?")[0] + "/paper", data=form, headers=EN,
                                 allow_redirects=False)
    assert response.status == 413
    assert "The file is too large." in await response.text()


# --- admins: the texts ---------------------------------------------------------------------------------------------


async def test_admin_drafts_previews_and_publishes_a_material_version(clinic: dict[str, Any]) -> None:
    client, patient = clinic["client"], clinic["patient"]
    await sign_consents(client, patient)
    admin = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    await browser(client, admin)
    assert 'href="/clinic/consent-texts"' in await page(client, "/")
    listing = await page(client, "/clinic/consent-texts")
    assert 'data-version="1" data-status="published"' in listing
    drafted = await client.post("/clinic/consent-texts/telemedicine_care/drafts", headers=EN, allow_redirects=False,
                                data={"csrf_token": form_token(listing)})
    assert drafted.status == 303
    draft_path = drafted.headers["Location"]
    draft = await page(client, draft_path)
    assert 'data-testid="draft-form"' in draft
    values = {name: hidden_textarea(draft, name) for name in ("title_ru", "body_ru", "title_en", "body_en")}
    assert values["body_en"].startswith("I, the patient named in this document")  # from the current version
    # An empty title is refused next to its field, keeping what was typed.
    bad = await client.post(draft_path, headers=EN, allow_redirects=False,
                            data={"csrf_token": form_token(draft), **values, "title_en": ""})
    assert bad.status == 422
    assert 'id="error-title_en"' in await bad.text()
    values["body_en"] += "\n\n## A new section\n\nThe clinic now also explains <b>this</b>."
    saved = await client.post(draft_path, headers=EN, allow_redirects=False,
                              data={"csrf_token": form_token(draft), **values})
    assert saved.status == 303
    assert saved.headers["Location"] == f"{draft_path}?saved=1"
    for language in ("ru", "en"):
        preview = await client.get(f"{draft_path}/preview?language={language}")
        assert preview.status == 200
        assert preview.content_type == "application/pdf"
        assert (await preview.read()).startswith(b"%PDF-")
    # Publishing asks first, saying what a material change means; the box is ticked by default.
    draft = await page(client, f"{draft_path}?saved=1")
    assert 'name="material" value="on" checked' in draft
    confirm = await client.post(f"{draft_path}/publish", headers=EN, allow_redirects=False,
                                data={"csrf_token": form_token(draft), "material": "on"})
    assert confirm.status == 200
    confirm_text = await confirm.text()
    assert "every patient who signed an earlier version must sign this one" in confirm_text
    published = await client.post(f"{draft_path}/publish", headers=EN, allow_redirects=False, data={
        "csrf_token": form_token(confirm_text), "confirmed": "yes", "material": "on"})
    assert published.status == 303
    shown = await page(client, published.headers["Location"])
    assert 'data-testid="published"' in shown
    assert 'data-testid="draft-form"' not in shown
    assert "The clinic now also explains &lt;b&gt;this&lt;/b&gt;." in shown  # the text is escaped, never markup
    refused = await client.post(draft_path, headers=EN, allow_redirects=False,
                                data={"csrf_token": form_token(shown), **values})
    assert refused.status == 409
    assert "A published version never changes." in await refused.text()
    # The patient must sign again, and cannot check in until then.
    await browser(client, patient)
    mine = await page(client, "/my/consents")
    assert 'data-testid="purpose-telemedicine_care" data-problem="outdated"' in mine
    assert "The text has changed since you signed it" in mine
    waiting_room = await page(client, f"/my/consultations/{clinic['consultation']}/waiting-room")
    assert 'data-testid="sign-link-telemedicine_care"' in waiting_room
    refused_checkin = await client.post(f"/my/consultations/{clinic['consultation']}/check-in", headers=EN,
                                        allow_redirects=False, data=checkin_form(clinic, waiting_room))
    assert refused_checkin.status == 409
    sign_page = await page(client, "/my/consents/telemedicine_care")
    assert "A new section" in sign_page
    assert "version 2 of the text" in sign_page


def hidden_textarea(text: str, name: str) -> str:
    """A form field's value, whether an input or a textarea."""
    found = re.search(rf'<textarea id="{name}" name="{name}"[^>]*>(.*?)</textarea>', text, re.S)
    if found is None:
        found = re.search(rf'name="{name}" value="([^"]*)"', text)
    assert found, name
    return html.unescape(found.group(1))


# --- languages ---------------------------------------------------------------------------------------------------


async def test_a_russian_patient_reads_and_signs_in_russian(aiohttp_client: Any, tmp_path: Path,
                                                            database_url: str) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, database_url)))
    await seed_catalogue(client)
    token = form_token(await page(client, "/register", headers=RU))
    registered = await client.post("/register", headers=RU, allow_redirects=False, data=register_form(
        token, email="maria@example.org", full_name="Мария Иванова", locale="ru"))
    assert registered.status == 303
    mine = await page(client, "/my/consents", headers=RU)
    assert "Мои согласия" in mine
    assert "Ещё не подписано" in mine
    assert "Прочитать и подписать" in mine
    text = await page(client, "/my/consents/recording", headers=RU)
    assert '<article class="card document" lang="ru"' in text
    assert "Шаг 1 из 2: прочитайте документ" in text
    assert "Прислать мне код" in text
    response = await client.post("/my/consents/recording/code", headers=RU, allow_redirects=False, data={
        "csrf_token": form_token(text), "document_id": hidden(text, "document_id"), "channel": "email",
        "next": "/my/consents"})
    asking = await page(client, response.headers["Location"].split("#")[0], headers=RU)
    assert "Мы отправили код из 6 цифр на m***@example.org" in asking
    outbox = sorted((client.app[keys.settings].outbox_dir / "email").glob("*.eml"))
    message = email.message_from_bytes(outbox[-1].read_bytes(), policy=email.policy.default)
    assert str(message["Subject"]) == "Код для подписания согласия"
    wrong = await client.post("/my/consents/recording/sign", headers=RU, allow_redirects=False, data={
        "csrf_token": form_token(asking), "document_id": hidden(asking, "document_id"), "next": "/my/consents",
        "sent": "email", "code": f"{(int(newest_code(client)) + 1) % 1_000_000:06d}"})
    assert "Код неверный. Осталось попыток: 4." in await wrong.text()


# --- one's own certificate ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("Consent Pages")


async def test_signing_with_ones_own_certificate_and_a_refusal_with_its_reason(
        aiohttp_client: Any, tmp_path: Path, database_url: str, pki: Pki) -> None:
    root, intermediate = pki.write(tmp_path / "ca")
    client: TestClient = await aiohttp_client(create_app(make_settings(
        tmp_path, database_url, consent_trust_anchors=[root], consent_intermediates=[intermediate])))
    await seed_catalogue(client)
    patient = await register_patient(client, email="certified@example.org")
    await browser(client, patient)
    text = await page(client, "/my/consents/telemedicine_care")
    assert 'data-testid="certificate"' in text
    document = await client.get(f"/api/v1/consent-documents/{hidden(text, 'document_id')}/pdf")
    pdf = await document.read()

    async def upload(signature: bytes) -> Any:
        form = FormData()
        for name in ("csrf_token", "document_id", "next"):
            form.add_field(name, form_token(text) if name == "csrf_token" else hidden(text, name))
        form.add_field("signature", signature, filename="consent.pdf.p7s", content_type="application/pkcs7-signature")
        return await client.post("/my/consents/telemedicine_care/certificate", data=form, headers=EN,
                                 allow_redirects=False)

    someone_else = sign_document(pdf, pki.patient(email="someone.else@example.org"), tmp_path / "other",
                                 chain=pki.intermediate)
    refused = await upload(someone_else)
    assert refused.status == 422
    refusal = await refused.text()
    assert "The certificate belongs to someone else" in by_testid(refusal, "signature-error")
    assert "<details class=\"card certificate\" data-testid=\"certificate\" open>" in refusal
    garbage = await upload(b"not a signature at all")
    assert "This file is not a signature." in await garbage.text()
    mine = sign_document(pdf, pki.patient(email="certified@example.org"), tmp_path / "mine", chain=pki.intermediate)
    signed = await upload(mine)
    assert signed.status == 303, await signed.text()
    (consent,) = await consents_of(client, patient)
    assert consent.level is SignatureLevel.enhanced_unqualified


async def test_the_certificate_section_is_hidden_without_trusted_cas(clinic: dict[str, Any]) -> None:
    text = await page(clinic["client"], "/my/consents/telemedicine_care")
    assert 'data-testid="certificate"' not in text
    response = await clinic["client"].post("/my/consents/telemedicine_care/certificate", headers=EN,
                                           allow_redirects=False, data={"csrf_token": form_token(text)})
    assert response.status == 404


async def test_reloading_the_signing_page_reuses_todays_document(clinic: dict[str, Any]) -> None:
    """Reloading the signing page reuses today's document instead of piling up new ones."""
    client = clinic["client"]
    first = hidden(await page(client, "/my/consents/telemedicine_care"), "document_id")
    second = hidden(await page(client, "/my/consents/telemedicine_care"), "document_id")
    assert first == second
    async with transaction(client.app[keys.sessions]) as session:
        count = len((await session.scalars(select(ConsentDocument))).all())
    assert count == 1
