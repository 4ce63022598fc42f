"""Times, dates and figures as the staff templates show them (Jinja filters registered by `setup`).

The page's language and the physician's zone come from the template context, so a physician reads their own
wall clock whoever renders the page; an admin looking at a physician sees that physician's zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_time
from babel.numbers import format_decimal, format_percent


def _zone(context: Mapping[str, Any]) -> ZoneInfo:
    zone = context.get("zone")
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo("UTC")


@jinja2.pass_context
def _time(context: Mapping[str, Any], value: dt.datetime | None) -> str:
    return "" if value is None else format_time(value, "short", tzinfo=_zone(context), locale=context["locale"])


# A weekday and date (Babel's skeletons pick abbreviations for Russian, so the patterns are spelled out).
DAY_PATTERNS = {"ru": "EEEE, d MMMM", "en": "EEEE, MMMM d"}


@jinja2.pass_context
def _day(context: Mapping[str, Any], value: dt.date | dt.datetime | None, year: bool = False) -> str:
    """«Понедельник, 3 ноября» / "Monday, November 3"; with the year, the locale's full date."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.astimezone(_zone(context)).date()
    locale = context["locale"]
    text = format_date(value, "full" if year else DAY_PATTERNS.get(locale, "full"), locale=locale)
    return text[:1].upper() + text[1:]


@jinja2.pass_context
def _short_date(context: Mapping[str, Any], value: dt.date | None) -> str:
    return "" if value is None else format_date(value, "medium", locale=context["locale"])


@jinja2.pass_context
def _number(context: Mapping[str, Any], value: float | None) -> str:
    return "—" if value is None else format_decimal(value, "#,##0.#", locale=context["locale"])


@jinja2.pass_context
def _percent(context: Mapping[str, Any], value: float | None) -> str:
    return "—" if value is None else format_percent(value, "#,##0.#%", locale=context["locale"])


def clock(value: dt.time | None) -> str:
    """A wall-clock time as the hours form shows and takes it (24-hour HH:MM in every language)."""
    return "" if value is None else value.strftime("%H:%M")


FILTERS: dict[str, Callable[..., str]] = {"staff_time": _time, "staff_day": _day, "staff_date": _short_date,
                                          "staff_number": _number, "staff_percent": _percent,
                                          "staff_clock": clock}
