"""iCalendar (RFC 5545) invitations for a consultation, as iTIP (RFC 5546) REQUEST or CANCEL.

One consultation keeps one UID for its whole life; every change or cancellation raises SEQUENCE, so the
patient's calendar updates or removes the entry it already has instead of adding a second one.
The entry says only "a teleconsultation, this doctor, this link": nothing about why.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Literal
from urllib.parse import urlsplit

from icalendar import Alarm, Calendar, Event, vCalAddress, vText

PRODID = "-//Telemed//Teleconsultation notices//EN"
ALARM_BEFORE = dt.timedelta(minutes=15)

IcsMethod = Literal["REQUEST", "CANCEL"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def consultation_uid(consultation_id: uuid.UUID, *, public_url: str) -> str:
    """The UID every invitation for this consultation carries: stable, unique, and revealing nothing."""
    host = urlsplit(public_url).hostname or "localhost"
    return f"{consultation_id}@{host}"


def invitation(
    *,
    uid: str,
    sequence: int,
    method: IcsMethod,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    summary: str,
    description: str,
    url: str,
    organizer_name: str,
    organizer_email: str,
    attendee_email: str | None = None,
    stamp: dt.datetime | None = None,
) -> bytes:
    """A one-event calendar: METHOD:REQUEST books or moves the entry, METHOD:CANCEL removes it.

    Raise `sequence` with every change and for the cancellation. RFC 5546 wants the recipient as ATTENDEE
    in both methods (some clients ignore an invitation without one), so pass `attendee_email`.
    """
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError("method must be REQUEST or CANCEL")
    if sequence < 0:
        raise ValueError("sequence must not be negative")
    start, end = _utc(starts_at, "starts_at"), _utc(ends_at, "ends_at")
    if end <= start:
        raise ValueError("ends_at must be after starts_at")
    for name, value in (("uid", uid), ("summary", summary), ("url", url), ("organizer_name", organizer_name),
                        ("organizer_email", organizer_email), ("attendee_email", attendee_email or "")):
        if _CONTROL.search(value):
            raise ValueError(f"{name} must be one line")
    if not uid.strip():
        raise ValueError("uid must not be empty")

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)

    event = Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    event.add("dtstamp", _utc(stamp, "stamp") if stamp else dt.datetime.now(dt.UTC).replace(microsecond=0))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", summary)
    event.add("description", description)
    event.add("url", url)
    event.add("location", url)  # calendar apps show the location on the entry; the call happens there
    event.add("class", "PRIVATE")  # shared and delegated calendars show "busy", not the entry
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    organizer = vCalAddress(f"mailto:{organizer_email}")
    organizer.params["cn"] = vText(organizer_name)
    event.add("organizer", organizer)
    if attendee_email:
        attendee = vCalAddress(f"mailto:{attendee_email}")
        attendee.params["cutype"] = vText("INDIVIDUAL")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["partstat"] = vText("NEEDS-ACTION")
        attendee.params["rsvp"] = vText("FALSE")  # replies would go to a no-reply mailbox
        event.add("attendee", attendee)
    if method == "REQUEST":
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", summary)
        alarm.add("trigger", -ALARM_BEFORE)
        event.add_component(alarm)

    calendar.add_component(event)
    return calendar.to_ical()


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(dt.UTC)
