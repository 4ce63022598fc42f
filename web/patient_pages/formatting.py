"""Times, numbers and links as the patient templates show them.

A slot is shown on the physician's wall clock with the zone named, because patient and physician may live in
different zones; a time travels in links as UTC with a `Z`, so a link means the same wherever it is opened.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time, get_timezone_location
from babel.numbers import format_decimal

from server.notify.messages import format_when
from web.patient_pages.texts import SPECIALTY_TEXT


def zone_info(time_zone: str) -> ZoneInfo:
    """The physician's zone; UTC for a name this machine does not know, so one bad name never breaks a page."""
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(instant: dt.datetime, time_zone: str, locale: str) -> str:
    """"пятница, 12 марта 2027 г., 14:20 (Москва, UTC+3)": the physician's wall clock and its zone."""
    return format_when(instant, locale=locale, time_zone=zone_info(time_zone).key)


def day_label(day: dt.date, locale: str) -> str:
    """A day's heading over its slots, spelled out in the patient's language."""
    return format_date(day, "full", locale=locale)


def clock(instant: dt.datetime, time_zone: str, locale: str) -> str:
    """"14:20 (Москва, UTC+3)": a slot's time under its day's heading."""
    zone = zone_info(time_zone)
    local = instant.astimezone(zone)
    return f"{format_time(local, 'short', locale=locale)} ({_zone_label(zone, local, locale)})".replace("\u202f", " ")


def _zone_label(zone: ZoneInfo, local: dt.datetime, locale: str) -> str:
    minutes = int((local.utcoffset() or dt.timedelta(0)).total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    utc = "UTC" if minutes == 0 else f"UTC{'+' if minutes > 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")
    if "/" not in zone.key or zone.key.startswith("Etc/"):
        return utc
    city = get_timezone_location(zone, locale=locale, return_city=True)
    return f"{city.rsplit('/', 1)[-1].replace('_', ' ')}, {utc}"


def number(value: float, locale: str) -> str:
    """A number with the patient's decimal separator, as in a screening answer."""
    return format_decimal(value, locale=locale)


def specialty_text(code: str) -> str:
    """The msgid for a known specialty code (translate it where shown), else the code in words."""
    return SPECIALTY_TEXT.get(code, code.replace("_", " "))


def iso(instant: dt.datetime) -> str:
    """A slot's start as it travels in links and forms: UTC, to the second, with a `Z`."""
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def link(path: str, **params: object) -> str:
    """`path` with the query parameters that have a value, encoded (a `+` in an offset stays a `+`)."""
    kept = {name: str(value) for name, value in params.items() if value not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path
