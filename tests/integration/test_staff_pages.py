"""The staff pages over HTTP: schedule, consultation detail, live waiting room, hours, figures, catalogue."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pyotp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.scheduling.models import ConditionVersion, Consultation, ConsultationStatus, Questionnaire
from tests.factories import Account, create_staff, register_patient
from tests.integration.test_pages import form_login, form_token, page_token
from tests.scheduling_helpers import (
    benign_answers,
    booked_clinic,
    booking,
    free_slot,
    physician_on_duty,
)

EN = {"Accept-Language": "en"}
DEVICES = {"camera": True, "microphone": False, "speaker": True, "browser": "Chromium 156",
           "problems": ["microphone blocked"]}
MOSCOW = ZoneInfo("Europe/Moscow")


def english(client: TestClient) -> None:
    """Staff accounts default to Russian; the language cookie (as the page's link sets) picks English."""
    client.session.cookie_jar.update_cookies({"telemed_lang": "en"}, client.make_url("/"))


async def sign_in(client: TestClient, account: Account, *, lang: str = "en") -> None:
    """Through the login form, as a browser; a second factor's code when the account has one."""
    client.session.cookie_jar.clear()
    otp = pyotp.TOTP(account.totp_secret).now() if account.totp_secret else None
    response = await form_login(client, account.email, account.password, otp=otp)
    assert response.status == 303, await response.text()
    if lang == "en":
        english(client)


async def page(client: TestClient, path: str, *, status: int = 200) -> str:
    response = await client.get(path, headers=EN, allow_redirects=False)
    html = await response.text()
    assert response.status == status, html
    return html


async def post(client: TestClient, path: str, data: dict[str, str] | None = None, *,
               form_page: str | None = None) -> Any:
    """Submit a form on `path` with the CSRF token a page of this session carries."""
    token = await page_token(client, form_page or "/")
    return await client.post(path, data={"csrf_token": token, **(data or {})}, headers=EN, allow_redirects=False)


async def admin_account(client: TestClient) -> Account:
    return await create_staff(client, Role.admin, with_totp=True, signed_in=False, full_name="Anna Admin")


@pytest.fixture
async def clinic(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    return await booked_clinic(aiohttp_client, tmp_path, database_url)


async def check_in(clinic: dict[str, Any]) -> None:
    response = await clinic["client"].post(
        f"/api/v1/consultations/{clinic['consultation']}/check-in", headers=clinic["patient"].auth,
        json={"answers": benign_answers(clinic["catalogue"]["checkin"]), "device_check": DEVICES})
    assert response.status == 200, await response.text()


async def stored(client: TestClient, consultation_id: str) -> Consultation:
    async with client.app[keys.read_sessions]() as session:
        found = await session.get(Consultation, uuid.UUID(consultation_id))
    assert found is not None
    return found


# --- the schedule ------------------------------------------------------------------------------------------------


async def test_schedule_lists_the_day_with_patient_reason_and_kind(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    day = clinic["starts_at"].astimezone(MOSCOW).date()
    html = await page(client, f"/clinic/schedule?day={day}")
    assert 'data-testid="schedule-row"' in html
    assert "Пётр Ожидающий" in html
    assert "Acute respiratory viral infection (common cold)" in html  # the reason, in the page's language
    assert "kind-primary" in html
    assert ">Primary<" in html
    assert f'href="/clinic/consultations/{clinic["consultation"]}"' in html
    assert clinic["starts_at"].astimezone(MOSCOW).strftime("%-I:%M\u202f%p") in html  # the physician's own zone
    assert f'href="/clinic/schedule?day={day + dt.timedelta(days=1)}"' in html
    assert f'href="/clinic/schedule?day={day - dt.timedelta(days=1)}"' in html
    # The week containing the day lists it too; the next day does not.
    week = await page(client, f"/clinic/schedule?week={day}")
    assert week.count('data-testid="schedule-day"') == 7
    assert "Пётр Ожидающий" in week
    assert "Пётр Ожидающий" not in await page(client, f"/clinic/schedule?day={day + dt.timedelta(days=1)}")


async def test_schedule_defaults_to_today_and_ignores_a_bad_date(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    for query in ("day=not-a-date", "day=0001-01-01", "week=9999-12-31"):
        html = await page(client, f"/clinic/schedule?{query}")
        assert html.count('data-testid="schedule-day"') == 1
        assert ">today<" in html
    await page(client, "/clinic/stats?day=0001-01-01")


# --- one consultation --------------------------------------------------------------------------------------------


async def test_consultation_detail_shows_complaint_and_answers_as_questions_and_is_audited(
        clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    html = await page(client, f"/clinic/consultations/{clinic['consultation']}")
    assert "Кашель и насморк третий день" in html  # the complaint, in the patient's words
    assert "J06.9" in html
    assert "Primary consultation" in html
    assert "Do not establish a diagnosis, prescribe or issue a sick note." in html
    respiratory = clinic["catalogue"]["respiratory"]
    answers = re.search(r'data-testid="screening-answers">(.*?)</table>', html, re.S)
    assert answers
    for question in respiratory.questions:
        if question.required:
            assert question.text.en.replace("'", "&#39;") in answers.group(1)
    assert "breathless_severe" not in answers.group(1)  # question text, never ids
    assert 'data-testid="admit"' not in html  # not checked in yet: nothing to admit
    async with client.app[keys.read_sessions]() as session:
        reads = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "consultation.read"))).all()
    assert [(entry.object_id, str(entry.subject_patient_id), entry.actor_role) for entry in reads] == [
        (clinic["consultation"], clinic["patient"].patient_id, "physician")]


async def test_another_physicians_consultation_is_a_404_page(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    other, _ = await physician_on_duty(client)
    await sign_in(client, other)
    html = await page(client, f"/clinic/consultations/{clinic['consultation']}", status=404)
    assert "Page not found" in html
    assert "Пётр Ожидающий" not in html
    await page(client, "/clinic/consultations/not-a-uuid", status=404)
    refused = await post(client, f"/clinic/consultations/{clinic['consultation']}/cancel")
    assert refused.status == 404
    assert (await stored(client, clinic["consultation"])).status is ConsultationStatus.scheduled
    async with client.app[keys.read_sessions]() as session:
        reads = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "consultation.read"))).all()
    assert reads == []


async def test_finish_from_the_detail_completes_the_call(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await check_in(clinic)
    await sign_in(client, clinic["doctor"])
    detail = f"/clinic/consultations/{clinic['consultation']}"
    html = await page(client, detail)
    assert 'data-testid="admit"' in html
    assert "Camera" in html
    assert "Microphone" in html
    assert "not working" in html
    assert "microphone blocked" in html
    admitted = await post(client, f"{detail}/admit", form_page=detail)
    assert admitted.status == 303
    assert admitted.headers["Location"] == detail
    html = await page(client, detail)
    assert 'data-testid="finish"' in html
    finished = await post(client, f"{detail}/finish", form_page=detail)
    assert finished.status == 303
    assert (await stored(client, clinic["consultation"])).status is ConsultationStatus.completed
    again = await post(client, f"{detail}/finish", form_page=detail)  # a second click, a stale page
    assert again.status == 409
    assert "This cannot be done in the consultation&#39;s current status." in await again.text()


async def test_staff_can_move_a_booking_to_another_free_time(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    detail = f"/clinic/consultations/{clinic['consultation']}"
    html = await page(client, detail)
    options = re.findall(r'<option value="([^"]+)">', html)
    assert options
    moved = await post(client, f"{detail}/reschedule", {"starts_at": options[-1]}, form_page=detail)
    assert moved.status == 303, await moved.text()
    assert (await stored(client, clinic["consultation"])).starts_at == dt.datetime.fromisoformat(options[-1])
    bad = await post(client, f"{detail}/reschedule", {"starts_at": "tomorrow"}, form_page=detail)
    assert bad.status == 422
    assert "Choose the new time." in await bad.text()


# --- the waiting room --------------------------------------------------------------------------------------------


async def test_waiting_room_lists_a_checked_in_patient_with_the_device_check(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    empty = await page(client, "/clinic/waiting-room")
    assert "Nobody is waiting." in empty
    assert 'data-testid="refresh"' in empty
    assert 'data-events="/api/v1/physicians/me/waiting-room/events"' in empty
    assert '<script src="/static/staff.js' in empty
    assert "<script>" not in empty  # no inline script: the CSP allows only 'self'
    await check_in(clinic)
    html = await page(client, "/clinic/waiting-room")
    item = re.search(r'data-testid="queue-item"(.*?)</article>', html, re.S)
    assert item
    assert "Пётр Ожидающий" in item.group(1)
    assert "Waiting 0 min" in item.group(1)
    assert "Microphone: not working" in item.group(1)
    assert "Camera: works" in item.group(1)
    assert "microphone blocked" in item.group(1)
    assert "Acute respiratory viral infection" in item.group(1)
    assert f'action="/clinic/consultations/{clinic["consultation"]}/admit"' in item.group(1)
    # The fragment the script swaps in is the same list, without the page around it.
    fragment = await page(client, "/clinic/waiting-room/list")
    assert fragment.lstrip().startswith("<div data-fragment=\"queue\"")
    assert "Пётр Ожидающий" in fragment
    assert "<html" not in fragment


async def test_admitting_from_the_waiting_room_moves_to_in_call(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await check_in(clinic)
    await sign_in(client, clinic["doctor"])
    html = await page(client, "/clinic/waiting-room")
    bus = client.app[keys.waiting_room]
    listener = bus.subscribe(uuid.UUID(clinic["physician_id"]))
    admitted = await client.post(f"/clinic/consultations/{clinic['consultation']}/admit", headers=EN,
                                 data={"csrf_token": form_token(html), "from": "queue"}, allow_redirects=False)
    assert admitted.status == 303
    assert admitted.headers["Location"] == "/clinic/waiting-room"
    assert (await stored(client, clinic["consultation"])).status is ConsultationStatus.in_call
    assert listener.get_nowait() == {"event": "admit", "consultation_id": clinic["consultation"]}  # other tabs
    bus.unsubscribe(uuid.UUID(clinic["physician_id"]), listener)
    after = await page(client, "/clinic/waiting-room")
    assert "Пётр Ожидающий" not in after
    assert "Nobody is waiting." in after
    # Admitting again (a stale second tab) explains itself on the waiting room.
    again = await client.post(f"/clinic/consultations/{clinic['consultation']}/admit", headers=EN,
                              data={"csrf_token": form_token(html), "from": "queue"}, allow_redirects=False)
    assert again.status == 409
    assert 'data-testid="error"' in await again.text()


async def test_waiting_room_is_for_physicians_only(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    boss = await admin_account(client)
    await sign_in(client, boss)
    await page(client, "/clinic/waiting-room", status=404)
    await page(client, "/clinic/schedule", status=404)


# --- working hours -----------------------------------------------------------------------------------------------


def hours_form(*rows: tuple[str, str, str, str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for index, (weekday, start, end, slot) in enumerate(rows):
        data |= {f"rows-{index}-weekday": weekday, f"rows-{index}-start": start, f"rows-{index}-end": end,
                 f"rows-{index}-slot": slot}
    return data


async def test_availability_editor_saves_hours_and_shows_the_bookings_left_out(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    html = await page(client, "/clinic/availability")
    assert html.count('name="rows-') >= 7 * 5  # every weekday's range, plus empty rows for new ones
    assert 'data-testid="uncovered"' not in html
    booked_day = clinic["starts_at"].astimezone(MOSCOW).weekday()
    other_day = str((booked_day + 3) % 7)
    # One range left (on another weekday), one blank row, one removed: the booking is no longer covered.
    data = hours_form((other_day, "09:00", "13:00", "20"), ("", "", "", "20"), ("0", "14:00", "18:00", "30"))
    data["rows-2-remove"] = "on"
    saved = await post(client, "/clinic/availability", data, form_page="/clinic/availability")
    assert saved.status == 303, await saved.text()
    assert saved.headers["Location"] == "/clinic/availability?saved=hours"
    html = await page(client, saved.headers["Location"])
    assert 'data-testid="saved"' in html
    assert 'name="rows-0-weekday"' in html
    assert 'value="09:00"' in html
    assert 'value="18:00"' not in html
    uncovered = re.search(r'data-testid="uncovered"(.*?)</section>', html, re.S)
    assert uncovered
    assert "reschedule them" in uncovered.group(1)
    assert "Пётр Ожидающий" in uncovered.group(1)
    assert f'href="/clinic/consultations/{clinic["consultation"]}"' in uncovered.group(1)
    assert (await stored(client, clinic["consultation"])).needs_reschedule is True
    schedule = await page(client, f"/clinic/schedule?day={clinic['starts_at'].astimezone(MOSCOW).date()}")
    assert 'data-testid="needs-reschedule"' in schedule


async def test_availability_editor_keeps_the_values_and_names_the_errors(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    data = hours_form(("1", "13:00", "09:00", "20"), ("2", "09:00", "12:00", "200"), ("3", "09:00", "12:00", "20"),
                      ("3", "11:00", "14:00", "20"), ("", "10:00", "11:00", "20"))
    refused = await post(client, "/clinic/availability", data, form_page="/clinic/availability")
    assert refused.status == 422
    html = await refused.text()
    assert "The end must be after the start." in html
    assert "From 5 to 120 minutes." in html
    assert "This range overlaps another one on the same day." in html
    assert "Choose a day." in html
    assert 'value="200"' in html
    assert 'value="13:00"' in html
    async with client.app[keys.read_sessions]() as session:
        from server.scheduling.availability import weekly_availability

        kept = await weekly_availability(session, physician_id=uuid.UUID(clinic["physician_id"]))
    assert len(kept) == 7  # nothing saved


async def test_day_off_is_added_and_removed(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    day = clinic["starts_at"].astimezone(MOSCOW).date()
    added = await post(client, "/clinic/availability/exceptions", {"day": day.isoformat(), "kind": "day_off"},
                       form_page="/clinic/availability")
    assert added.status == 303, await added.text()
    html = await page(client, added.headers["Location"])
    rows = re.findall(r'data-testid="exception">(.*?)</tr>', html, re.S)
    assert len(rows) == 1
    assert "Day off" in rows[0]
    assert "Пётр Ожидающий" in html  # the booked day is now off: the booking needs a new time
    exception_id = re.search(r'/availability/exceptions/([0-9a-f-]{36})/remove', rows[0])
    assert exception_id
    removed = await post(client, f"/clinic/availability/exceptions/{exception_id.group(1)}/remove",
                         form_page="/clinic/availability")
    assert removed.status == 303
    assert 'data-testid="exception"' not in await page(client, removed.headers["Location"])
    # Extra hours need a range; a past date is refused; the typed values stay.
    refused = await post(client, "/clinic/availability/exceptions",
                         {"day": (day + dt.timedelta(days=2)).isoformat(), "kind": "extra_hours", "start": "18:00"},
                         form_page="/clinic/availability")
    assert refused.status == 422
    html = await refused.text()
    assert "Extra hours need a start and an end after it." in html
    assert 'value="18:00"' in html
    past = await post(client, "/clinic/availability/exceptions",
                      {"day": (day - dt.timedelta(days=3)).isoformat(), "kind": "day_off"},
                      form_page="/clinic/availability")
    assert past.status == 422
    assert "Choose today or a later date." in await past.text()


async def test_admin_edits_any_physicians_hours_and_a_physician_only_their_own(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    base = f"/clinic/physicians/{clinic['physician_id']}"
    await sign_in(client, clinic["doctor"])
    await page(client, f"{base}/availability", status=404)  # physicians use /clinic/availability
    boss = await admin_account(client)
    await sign_in(client, boss)
    listing = await page(client, "/clinic/schedules")
    assert f'href="{base}/availability"' in listing
    assert f'href="{base}/stats"' in listing
    html = await page(client, f"{base}/availability")
    assert "Working hours: Staff physician" in html
    saved = await post(client, f"{base}/availability", hours_form(("0", "08:00", "12:00", "15")),
                       form_page=f"{base}/availability")
    assert saved.status == 303
    assert saved.headers["Location"] == f"{base}/availability?saved=hours"
    assert 'value="08:00"' in await page(client, saved.headers["Location"])
    await page(client, f"/clinic/physicians/{uuid.uuid4()}/availability", status=404)
    await page(client, "/clinic/physicians/nonsense/stats", status=404)


# --- figures -----------------------------------------------------------------------------------------------------


async def test_stats_page_shows_the_days_figures(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await check_in(clinic)
    await sign_in(client, clinic["doctor"])
    detail = f"/clinic/consultations/{clinic['consultation']}"
    assert (await post(client, f"{detail}/admit", form_page=detail)).status == 303
    assert (await post(client, f"{detail}/finish", form_page=detail)).status == 303
    day = clinic["starts_at"].astimezone(MOSCOW).date()
    html = await page(client, f"/clinic/stats?day={day}")
    figures = dict(re.findall(r'<dd data-testid="([a-z-]+)">([^<]*)</dd>', html))
    api = await (await client.get(f"/api/v1/physicians/{clinic['physician_id']}/stats?day={day}",
                                  headers=clinic["doctor"].auth)).json()
    assert figures["booked"] == str(api["booked"]) == "1"
    assert figures["completed"] == "1"
    assert figures["cancelled"] == "0"
    assert figures["no-show"] == "0"
    assert figures["no-show-rate"] == "0%"
    assert figures["mean-wait"] == f"{api['mean_wait_seconds'] / 60:.1f}".rstrip("0").rstrip(".")
    empty = await page(client, f"/clinic/stats?day={day + dt.timedelta(days=10)}")
    assert '<dd data-testid="no-show-rate">—</dd>' in empty
    assert '<dd data-testid="booked">0</dd>' in empty
    boss = await admin_account(client)
    await sign_in(client, boss)
    admins = await page(client, f"/clinic/physicians/{clinic['physician_id']}/stats?day={day}")
    assert '<dd data-testid="completed">1</dd>' in admins


# --- admins: catalogue and questionnaires ------------------------------------------------------------------------


def condition_form(**overrides: str) -> dict[str, str]:
    values = {"code": "arvi", "icd10": "J06.9", "name_ru": "ОРВИ (новая редакция)",
              "name_en": "Common cold (new wording)", "audience": "adult", "questionnaire": "respiratory",
              "allows_primary": "on", "allows_repeat": "on", "active": "on"}
    return {key: value for key, value in {**values, **overrides}.items() if value is not None}


async def test_catalogue_saves_a_new_version_and_keeps_the_old_one(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, await admin_account(client))
    html = await page(client, "/clinic/catalogue")
    assert 'data-code="arvi"' in html
    assert "J06.9" in html
    edit = await page(client, "/clinic/catalogue?edit=arvi")
    assert "New version of arvi" in edit
    saved = await post(client, "/clinic/catalogue", condition_form(), form_page="/clinic/catalogue")
    assert saved.status == 303, await saved.text()
    assert saved.headers["Location"] == "/clinic/catalogue?saved=arvi"
    html = await page(client, saved.headers["Location"])
    row = re.search(r'data-code="arvi">(.*?)</tr>', html, re.S)
    assert row
    assert "Common cold (new wording)" in row.group(1)
    assert "<td>2</td>" in row.group(1)
    async with client.app[keys.read_sessions]() as session:
        versions = (await session.scalars(select(ConditionVersion).where(ConditionVersion.code == "arvi")
                                          .order_by(ConditionVersion.version))).all()
    assert [(v.version, v.is_current, v.name_en) for v in versions] == [
        (1, False, "Acute respiratory viral infection (common cold)"), (2, True, "Common cold (new wording)")]
    # The booking keeps the version it was made with.
    consultation = await stored(client, clinic["consultation"])
    assert consultation.condition_id == versions[0].id
    added = await post(client, "/clinic/catalogue", condition_form(code="tele_test", icd10=""),
                       form_page="/clinic/catalogue")
    assert added.status == 303
    assert 'data-code="tele_test"' in await page(client, "/clinic/catalogue")


async def test_catalogue_form_errors_keep_the_values(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, await admin_account(client))
    refused = await post(client, "/clinic/catalogue",
                         condition_form(code="Bad Code", icd10="flu", name_en="", allows_primary="",
                                        allows_repeat=""), form_page="/clinic/catalogue")
    assert refused.status == 422
    html = await refused.text()
    assert "Lower-case Latin letters, digits and _ only" in html
    assert "An ICD-10 code such as J06.9" in html
    assert "Enter the name in English." in html
    assert 'value="Bad Code"' in html
    unknown = await post(client, "/clinic/catalogue", condition_form(code="new_one", questionnaire="nowhere"),
                         form_page="/clinic/catalogue")
    assert unknown.status == 422
    assert "No screening questionnaire with this code is published." in await unknown.text()


async def test_deactivating_an_entry_hides_it_from_booking(clinic: dict[str, Any]) -> None:
    client, patient = clinic["client"], clinic["patient"]
    await sign_in(client, await admin_account(client))
    html = await page(client, "/clinic/catalogue")
    row = re.search(r'data-code="influenza">(.*?)</tr>', html, re.S)
    assert row
    assert "Deactivate" in row.group(1)
    toggle = {name: value for name, value in re.findall(r'name="([a-z_0-9]+)" value="([^"]*)"', row.group(1))}
    assert "active" not in toggle  # the one-click form saves the same entry, inactive
    deactivated = await client.post("/clinic/catalogue", data=toggle, headers=EN, allow_redirects=False)
    assert deactivated.status == 303
    offered = await (await client.get("/api/v1/conditions", headers=patient.auth)).json()
    assert "influenza" not in {item["code"] for item in offered["items"]}
    html = await page(client, "/clinic/catalogue")
    row = re.search(r'data-code="influenza">(.*?)</tr>', html, re.S)
    assert row
    assert "Activate" in row.group(1)
    assert "<td>no</td>" in row.group(1)


async def test_questionnaire_page_reads_like_a_document_and_publishes_versions(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, await admin_account(client))
    listing = await page(client, "/clinic/questionnaires")
    assert 'href="/clinic/questionnaires/respiratory"' in listing
    html = await page(client, "/clinic/questionnaires/respiratory")
    respiratory = clinic["catalogue"]["respiratory"]
    assert respiratory.questions[0].text.en in html
    assert "Red flag: call an ambulance" in html
    assert "&gt;" in html
    assert "39" in html
    assert "version 1" in html
    text = re.search(r'<textarea[^>]*>(.*?)</textarea>', html, re.S)
    assert text
    # Not JSON at all.
    broken = await post(client, "/clinic/questionnaires/respiratory", {"definition": '{"code": "respiratory",'},
                        form_page="/clinic/questionnaires/respiratory")
    assert broken.status == 422
    broken_html = await broken.text()
    assert "This is not valid JSON: line 1" in broken_html
    assert "{&#34;code&#34;: &#34;respiratory&#34;," in broken_html or '{"code": "respiratory",' in broken_html
    # JSON, but not a questionnaire: the format's field errors.
    definition = respiratory.model_dump(mode="json")
    definition["rules"][0]["when"]["question"] = "no_such_question"
    definition["questions"][0]["type"] = "maybe"
    invalid = await post(client, "/clinic/questionnaires/respiratory", {"definition": json.dumps(definition)},
                         form_page="/clinic/questionnaires/respiratory")
    assert invalid.status == 422
    invalid_html = await invalid.text()
    assert "questions.0.type" in invalid_html
    assert "Nothing was published." in invalid_html
    # Another questionnaire's code is refused here.
    other = await post(client, "/clinic/questionnaires/respiratory",
                       {"definition": json.dumps({**respiratory.model_dump(mode="json"), "code": "skin"})},
                       form_page="/clinic/questionnaires/respiratory")
    assert other.status == 422
    # A valid definition publishes version 2.
    new = respiratory.model_dump(mode="json")
    new["title"]["en"] = "Cold and cough (revised)"
    published = await post(client, "/clinic/questionnaires/respiratory", {"definition": json.dumps(new)},
                           form_page="/clinic/questionnaires/respiratory")
    assert published.status == 303, await published.text()
    assert published.headers["Location"] == "/clinic/questionnaires/respiratory?published=2"
    html = await page(client, published.headers["Location"])
    assert "Published version 2." in html
    assert "Cold and cough (revised)" in html
    async with client.app[keys.read_sessions]() as session:
        versions = (await session.scalars(select(Questionnaire.version).where(
            Questionnaire.code == "respiratory").order_by(Questionnaire.version))).all()
    assert versions == [1, 2]
    await page(client, "/clinic/questionnaires/no_such_code", status=404)


# --- who may open what -------------------------------------------------------------------------------------------

PHYSICIAN_PAGES = ["/clinic/schedule", "/clinic/waiting-room", "/clinic/waiting-room/list", "/clinic/availability",
                   "/clinic/stats"]
ADMIN_PAGES = ["/clinic/schedules", "/clinic/catalogue", "/clinic/questionnaires",
               "/clinic/questionnaires/respiratory"]


async def test_patients_get_404_and_anonymous_visitors_the_login(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    paths = [*PHYSICIAN_PAGES, *ADMIN_PAGES, f"/clinic/consultations/{clinic['consultation']}",
             f"/clinic/physicians/{clinic['physician_id']}/availability"]
    for path in paths:
        response = await client.get(path, headers=EN, allow_redirects=False)
        assert response.status == 302, path
        assert response.headers["Location"] == "/login?next=" + path
    patient = await register_patient(client, signed_in=False)
    await sign_in(client, patient)
    for path in paths:
        html = await page(client, path, status=404)
        assert "Page not found" in html, path
    anonymous_post = await client.post(f"/clinic/consultations/{clinic['consultation']}/admit", data={},
                                       allow_redirects=False)
    assert anonymous_post.status in (303, 404)


async def test_an_admin_without_a_second_factor_is_sent_to_set_it_up(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    boss = await create_staff(client, Role.admin, signed_in=False)
    await sign_in(client, boss)
    for path in [*ADMIN_PAGES, f"/clinic/physicians/{clinic['physician_id']}/stats"]:
        response = await client.get(path, headers=EN, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"] == "/account/mfa"
    refused = await post(client, "/clinic/catalogue", condition_form())
    assert refused.status == 303
    async with client.app[keys.read_sessions]() as session:
        assert len((await session.scalars(select(ConditionVersion).where(ConditionVersion.code == "arvi"))).all()) == 1


async def test_staff_pages_render_in_russian(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await check_in(clinic)
    await sign_in(client, clinic["doctor"], lang="ru")  # staff accounts default to Russian
    day = clinic["starts_at"].astimezone(MOSCOW).date()
    schedule = await page(client, f"/clinic/schedule?day={day}")
    assert '<html lang="ru">' in schedule
    assert "Первичная" in schedule
    assert "ОРВИ" in schedule
    assert "Следующий день" in schedule
    assert clinic["starts_at"].astimezone(MOSCOW).strftime("%H:%M") in schedule
    queue = await page(client, "/clinic/waiting-room")
    assert "Зал ожидания" in queue
    assert "Микрофон: не работает" in queue
    assert "Впустить" in queue
    detail = await page(client, f"/clinic/consultations/{clinic['consultation']}")
    respiratory = clinic["catalogue"]["respiratory"]
    assert respiratory.questions[0].text.ru in detail
    assert "Не устанавливайте диагноз" in detail
    for path in ("/clinic/availability", "/clinic/stats"):
        html = await page(client, path)
        assert "Сохранить" in html or "Итоги дня" in html, path
        for english_word in ("Working hours", "Day figures", "Save the weekly hours", "Booked"):
            assert english_word not in html, (path, english_word)


POSTS = ["/clinic/consultations/{c}/admit", "/clinic/consultations/{c}/finish", "/clinic/consultations/{c}/cancel",
         "/clinic/consultations/{c}/reschedule", "/clinic/availability", "/clinic/availability/exceptions",
         "/clinic/availability/exceptions/{e}/remove"]
ADMIN_POSTS = ["/clinic/catalogue", "/clinic/questionnaires/respiratory", "/clinic/physicians/{p}/availability",
               "/clinic/physicians/{p}/availability/exceptions",
               "/clinic/physicians/{p}/availability/exceptions/{e}/remove"]


@pytest.mark.parametrize("submitted", [None, "stale"])
async def test_every_form_needs_its_csrf_token(clinic: dict[str, Any], submitted: str | None) -> None:
    client = clinic["client"]
    await check_in(clinic)
    ids = {"c": clinic["consultation"], "e": str(uuid.uuid4()), "p": clinic["physician_id"]}
    data = {"csrf_token": submitted} if submitted else {}
    await sign_in(client, clinic["doctor"])
    await page_token(client, "/clinic/waiting-room")  # the browser holds a CSRF cookie
    for path in POSTS:
        response = await client.post(path.format(**ids), data={**data, "starts_at": "x"}, headers=EN,
                                     allow_redirects=False)
        assert response.status == 403, path
        assert "The form has expired" in await response.text()
    assert (await stored(client, clinic["consultation"])).status is ConsultationStatus.waiting
    await sign_in(client, await admin_account(client))
    await page_token(client, "/clinic/catalogue")
    for path in ADMIN_POSTS:
        response = await client.post(path.format(**ids), data={**data, **condition_form()}, headers=EN,
                                     allow_redirects=False)
        assert response.status == 403, path


async def test_physician_records_an_in_person_diagnosis_that_allows_repeat_visits(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    await sign_in(client, clinic["doctor"])
    detail = f"/clinic/consultations/{clinic['consultation']}"
    assert 'data-testid="diagnosis"' in await page(client, detail)
    future = await post(client, f"{detail}/diagnosis", {"condition_code": "hypertension",
                                                         "diagnosed_on": "2999-01-01"}, form_page=detail)
    assert future.headers["Location"].endswith("diagnosis=invalid")
    recorded = await post(client, f"{detail}/diagnosis", {"condition_code": "hypertension",
                                                           "diagnosed_on": "2025-06-01"}, form_page=detail)
    assert recorded.status == 303
    assert recorded.headers["Location"].endswith("diagnosis=recorded")
    patient = clinic["patient"]
    slot = await free_slot(client, patient, clinic["physician_id"], 30)
    repeat = await client.post("/api/v1/consultations", headers=patient.auth, json=booking(
        clinic["physician_id"], slot, benign_answers(clinic["catalogue"]["cardiovascular"]), condition="hypertension",
        kind="repeat"))
    assert repeat.status == 201, await repeat.text()


# --- booking on a patient's behalf -------------------------------------------------------------------------------


def _answers_form(answers: dict[str, Any]) -> dict[str, str]:
    return {f"answers.{key}": ("yes" if value else "no") if isinstance(value, bool) else str(value)
            for key, value in answers.items()}


def _chosen_slot(html: str) -> str:
    found = re.search(r'<select id="starts-at" name="starts_at"[^>]*>\s*<option value="([^"]+)"', html)
    assert found, "no free slot offered"
    return found.group(1)


async def _patient_consultations(client: TestClient, patient: Account) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/consultations?scope=all", headers=patient.auth)
    assert response.status == 200, await response.text()
    return list((await response.json())["items"])


async def test_physician_finds_the_patient_and_books_them_into_an_own_slot(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    patient = await register_patient(client, full_name="Vera Telefonova", signed_in=True)
    await register_patient(client, full_name="Someone Else")
    await sign_in(client, clinic["doctor"])
    found = await page(client, "/clinic/book?q=telefon")
    assert "Vera Telefonova" in found
    assert "Someone Else" not in found
    assert f'href="/clinic/book?patient_id={patient.patient_id}"' in found
    async with client.app[keys.read_sessions]() as session:
        searched = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "patient.searched"))).all()
    assert [(str(entry.subject_patient_id), entry.actor_role) for entry in searched] == [
        (patient.patient_id, "physician")]
    choice = await page(client, f"/clinic/book?patient_id={patient.patient_id}&condition=arvi&kind=primary")
    assert 'name="physician_id"' not in choice  # a physician books into their own schedule only
    starts_at = _chosen_slot(choice)
    form = await page(client, f"/clinic/book?patient_id={patient.patient_id}&condition=arvi&kind=primary"
                              f"&starts_at={quote(starts_at)}")
    assert 'data-testid="screening-form"' in form
    response = await client.post("/clinic/book", headers=EN, allow_redirects=False, data={
        "csrf_token": form_token(form), "patient_id": patient.patient_id, "condition": "arvi", "kind": "primary",
        "physician_id": clinic["physician_id"], "starts_at": starts_at, "complaint": "Насморк",
        **_answers_form(benign_answers(clinic["catalogue"]["respiratory"]))})
    assert response.status == 303, await response.text()
    items = await _patient_consultations(client, patient)
    assert len(items) == 1
    assert response.headers["Location"] == f"/clinic/consultations/{items[0]['id']}"
    assert dt.datetime.fromisoformat(items[0]["starts_at"]) == dt.datetime.fromisoformat(starts_at)
    assert "Vera Telefonova" in await page(client, response.headers["Location"])


async def test_booking_for_a_patient_with_a_red_flag_books_nothing(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    patient = await register_patient(client, full_name="Red Flag", signed_in=True)
    await sign_in(client, clinic["doctor"])
    starts_at = _chosen_slot(await page(client, f"/clinic/book?patient_id={patient.patient_id}&condition=arvi"))
    answers = {**benign_answers(clinic["catalogue"]["respiratory"]), "temperature": 40.2}
    response = await post(client, "/clinic/book", {
        "patient_id": patient.patient_id, "condition": "arvi", "kind": "primary",
        "physician_id": clinic["physician_id"], "starts_at": starts_at, **_answers_form(answers)},
        form_page="/clinic/book")
    assert response.status == 422
    html = await response.text()
    assert 'data-testid="emergency"' in html
    assert "103" in html
    assert "112" in html
    assert "Nothing was booked" in html
    assert await _patient_consultations(client, patient) == []


async def test_a_physician_cannot_book_into_another_physicians_slot(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    patient = await register_patient(client, full_name="Other Slot", signed_in=True)
    _, other_id = await physician_on_duty(client)
    other_slot = await free_slot(client, patient, other_id)
    await sign_in(client, clinic["doctor"])
    await page(client, f"/clinic/book?patient_id={patient.patient_id}&condition=arvi&physician_id={other_id}",
               status=404)
    response = await post(client, "/clinic/book", {
        "patient_id": patient.patient_id, "condition": "arvi", "kind": "primary", "physician_id": other_id,
        "starts_at": other_slot, **_answers_form(benign_answers(clinic["catalogue"]["respiratory"]))},
        form_page="/clinic/book")
    assert response.status == 404
    assert await _patient_consultations(client, patient) == []


async def test_booking_for_a_patient_needs_the_csrf_token(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    patient = await register_patient(client, full_name="No Token", signed_in=True)
    await sign_in(client, clinic["doctor"])
    starts_at = _chosen_slot(await page(client, f"/clinic/book?patient_id={patient.patient_id}&condition=arvi"))
    response = await client.post("/clinic/book", headers=EN, allow_redirects=False, data={
        "patient_id": patient.patient_id, "condition": "arvi", "kind": "primary",
        "physician_id": clinic["physician_id"], "starts_at": starts_at,
        **_answers_form(benign_answers(clinic["catalogue"]["respiratory"]))})
    assert response.status == 403
    assert await _patient_consultations(client, patient) == []


async def test_an_admin_chooses_the_physician_and_books_for_the_patient(clinic: dict[str, Any]) -> None:
    client = clinic["client"]
    patient = await register_patient(client, full_name="Admin Booked", signed_in=True)
    await sign_in(client, await admin_account(client))
    base = f"/clinic/book?patient_id={patient.patient_id}&condition=arvi&kind=primary"
    choice = await page(client, base)
    assert f'<option value="{clinic["physician_id"]}"' in choice
    assert 'id="starts-at"' not in choice
    starts_at = _chosen_slot(await page(client, f"{base}&physician_id={clinic['physician_id']}"))
    response = await post(client, "/clinic/book", {
        "patient_id": patient.patient_id, "condition": "arvi", "kind": "primary",
        "physician_id": clinic["physician_id"], "starts_at": starts_at,
        **_answers_form(benign_answers(clinic["catalogue"]["respiratory"]))}, form_page="/clinic/book")
    assert response.status == 303, await response.text()
    assert len(await _patient_consultations(client, patient)) == 1
