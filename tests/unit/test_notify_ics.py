"""Calendar invitations: REQUEST books or moves an entry, CANCEL removes it; nothing but the generic fields."""

from __future__ import annotations

import datetime as dt
import inspect
import uuid
from typing import Any

import pytest
from icalendar import Calendar

from server.notify.ics import consultation_uid, invitation

STARTS_AT = dt.datetime(2027, 3, 28, 12, 20, tzinfo=dt.UTC)
ENDS_AT = STARTS_AT + dt.timedelta(minutes=20)
STAMP = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)
LINK = "https://telemed.clinic.example/c/1"
EVENT_PROPERTIES = {
    "UID", "SEQUENCE", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "DESCRIPTION", "URL", "LOCATION", "CLASS",
    "STATUS", "ORGANIZER", "ATTENDEE",
}


def _invitation(**overrides: Any) -> Calendar:
    values: dict[str, Any] = {
        "uid": "c0ffee@telemed.clinic.example",
        "sequence": 0,
        "method": "REQUEST",
        "starts_at": STARTS_AT,
        "ends_at": ENDS_AT,
        "summary": "Телеконсультация: врач Иванова Анна Петровна",
        "description": LINK,
        "url": LINK,
        "organizer_name": "Клиника «Здоровье»",
        "organizer_email": "no-reply@clinic.example",
        "attendee_email": "patient@example.org",
        "stamp": STAMP,
    }
    values.update(overrides)
    return Calendar.from_ical(invitation(**values))


def test_invitation_takes_no_free_text_beyond_summary_and_description() -> None:
    parameters = inspect.signature(invitation).parameters
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters.values())
    assert set(parameters) == {
        "uid", "sequence", "method", "starts_at", "ends_at", "summary", "description", "url", "organizer_name",
        "organizer_email", "attendee_email", "stamp",
    }


def test_invitation_request_has_exactly_the_generic_fields_and_an_alarm() -> None:
    calendar = _invitation(sequence=2)
    assert set(calendar) == {"PRODID", "VERSION", "CALSCALE", "METHOD"}
    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert set(event) == EVENT_PROPERTIES
    assert event["UID"] == "c0ffee@telemed.clinic.example"
    assert event.decoded("SEQUENCE") == 2
    assert event.decoded("DTSTART") == STARTS_AT
    assert event.decoded("DTSTART").utcoffset() == dt.timedelta(0)
    assert event.decoded("DTEND") == ENDS_AT
    assert event.decoded("DTSTAMP") == STAMP
    assert event["STATUS"] == "CONFIRMED"
    assert event["CLASS"] == "PRIVATE"
    assert str(event["ORGANIZER"]) == "mailto:no-reply@clinic.example"
    assert event["ORGANIZER"].params["CN"] == "Клиника «Здоровье»"
    assert str(event["ATTENDEE"]) == "mailto:patient@example.org"
    assert event["ATTENDEE"].params["RSVP"] == "FALSE"
    (alarm,) = event.walk("VALARM")
    assert set(alarm) == {"ACTION", "DESCRIPTION", "TRIGGER"}
    assert alarm["ACTION"] == "DISPLAY"
    assert alarm.decoded("TRIGGER") == -dt.timedelta(minutes=15)


def test_invitation_cancel_is_cancelled_and_has_no_alarm() -> None:
    calendar = _invitation(method="CANCEL", sequence=3)
    assert calendar["METHOD"] == "CANCEL"
    (event,) = calendar.walk("VEVENT")
    assert event["STATUS"] == "CANCELLED"
    assert event.decoded("SEQUENCE") == 3
    assert event.walk("VALARM") == []
    assert set(event) == EVENT_PROPERTIES


def test_invitation_stores_times_in_utc_whatever_the_input_zone() -> None:
    moscow = dt.timezone(dt.timedelta(hours=3))
    calendar = _invitation(starts_at=STARTS_AT.astimezone(moscow), ends_at=ENDS_AT.astimezone(moscow))
    raw = calendar.to_ical()
    assert b"DTSTART:20270328T122000Z" in raw
    assert b"DTEND:20270328T124000Z" in raw


def test_invitation_without_attendee_leaves_it_out() -> None:
    (event,) = _invitation(attendee_email=None).walk("VEVENT")
    assert set(event) == EVENT_PROPERTIES - {"ATTENDEE"}


def test_invitation_stamps_now_by_default() -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    (event,) = _invitation(stamp=None).walk("VEVENT")
    assert before <= event.decoded("DTSTAMP") <= dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"method": "PUBLISH"}, "method"),
        ({"sequence": -1}, "sequence"),
        ({"ends_at": STARTS_AT}, "after"),
        ({"starts_at": dt.datetime(2027, 3, 28, 12, 20)}, "aware"),  # noqa: DTZ001 - the naive input under test
        ({"uid": " "}, "uid"),
        ({"summary": "x\r\nATTENDEE:mailto:other@example.org"}, "summary"),
        ({"organizer_email": "a@b\nX:1"}, "organizer_email"),
    ],
)
def test_invitation_rejects_bad_input(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _invitation(**override)


def test_consultation_uid_is_stable_and_names_only_the_clinic_host() -> None:
    consultation_id = uuid.UUID("3f2b8c1e-5d2a-4c6e-9a7b-1e2d3c4b5a69")
    uid = consultation_uid(consultation_id, public_url="https://telemed.clinic.example:8443/app")
    assert uid == "3f2b8c1e-5d2a-4c6e-9a7b-1e2d3c4b5a69@telemed.clinic.example"
    assert consultation_uid(consultation_id, public_url="https://telemed.clinic.example") == uid
