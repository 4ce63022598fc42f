"""The words of a consultation notice: e-mail subject and text, SMS and calendar entry, in Russian or English.

A notice carries only the time, the physician's name, the link and the clinic: `compose` has no parameter
that could take a reason, a condition or a complaint, because even the fact of seeking a given kind of care
is confidential and reminders are read on lock screens and shared calendars.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time, get_timezone_location

# An SMS may take up to three segments: 3 x 67 = 201 Cyrillic characters (UCS-2) or 3 x 153 = 459 GSM-7
# ones. A 160-character Russian text costs three segments anyway, so the limit is stated in what is billed.
SMS_MAX_SEGMENTS = 3


class NotificationKind(StrEnum):
    booked = "booked"
    changed = "changed"
    cancelled = "cancelled"
    reminder_24h = "reminder_24h"
    reminder_1h = "reminder_1h"
    needs_reschedule = "needs_reschedule"  # the physician's hours no longer cover the booking


@dataclass(frozen=True, slots=True)
class Message:
    """One notice in one language; `calendar_*` are the generic summary and description for the .ics."""

    language: str
    subject: str
    text: str
    sms: str
    calendar_summary: str
    calendar_description: str


@dataclass(frozen=True, slots=True)
class _Texts:
    subject: dict[NotificationKind, str]
    lead: dict[NotificationKind, str]
    sms: dict[NotificationKind, str]
    greeting: str
    when_label: str
    physician_label: str
    link_label: str
    attend: str
    rebook: str
    emergency: str
    regards: str
    automatic: str
    calendar_summary: str
    sms_link: str
    sms_rebook: str
    sms_emergency: str


_K = NotificationKind

_RU = _Texts(
    subject={
        _K.booked: "Вы записаны на телеконсультацию",
        _K.changed: "Время телеконсультации изменилось",
        _K.cancelled: "Телеконсультация отменена",
        _K.reminder_24h: "Напоминание о телеконсультации",
        _K.reminder_1h: "Телеконсультация скоро начнётся",
        _K.needs_reschedule: "Нужно выбрать другое время телеконсультации",
    },
    lead={
        _K.booked: "Вы записаны на телеконсультацию.",
        _K.changed: "Время вашей телеконсультации изменилось, новое время указано ниже.",
        _K.cancelled: "Ваша телеконсультация отменена.",
        _K.reminder_24h: "Напоминаем о вашей телеконсультации.",
        _K.reminder_1h: "Ваша телеконсультация скоро начнётся.",
        _K.needs_reschedule: "Расписание врача изменилось, и в это время приём не ведётся. Запись сохранена: "
                             "пожалуйста, выберите другое время.",
    },
    sms={
        _K.booked: "Вы записаны на телеконсультацию {when}.",
        _K.changed: "Телеконсультация перенесена на {when}.",
        _K.cancelled: "Телеконсультация {when} отменена.",
        _K.reminder_24h: "Напоминаем о телеконсультации {when}.",
        _K.reminder_1h: "Телеконсультация скоро начнётся: {when}.",
        _K.needs_reschedule: "Выберите другое время вместо {when}.",
    },
    greeting="Здравствуйте!",
    when_label="Когда",
    physician_label="Врач",
    link_label="Ссылка",
    attend=(
        "Откройте ссылку за несколько минут до начала, чтобы проверить камеру и микрофон. "
        "Если вы не сможете подключиться, отмените запись по той же ссылке: "
        "это время смогут занять другие пациенты."
    ),
    rebook="Если консультация вам по-прежнему нужна, выберите другое время по ссылке.",
    emergency="В экстренной ситуации звоните 103 или 112.",
    regards="С уважением,",
    automatic="Это письмо отправлено автоматически, отвечать на него не нужно.",
    calendar_summary="Телеконсультация: врач {physician}",
    sms_link="Вход и отмена: {link}",
    sms_rebook="Новая запись: {link}",
    sms_emergency="Скорая помощь: 103 или 112.",
)

_EN = _Texts(
    subject={
        _K.booked: "Your teleconsultation is booked",
        _K.changed: "Your teleconsultation has been rescheduled",
        _K.cancelled: "Your teleconsultation has been cancelled",
        _K.reminder_24h: "Reminder of your teleconsultation",
        _K.reminder_1h: "Your teleconsultation starts soon",
        _K.needs_reschedule: "Please choose another time for your teleconsultation",
    },
    lead={
        _K.booked: "Your teleconsultation is booked.",
        _K.changed: "Your teleconsultation has been moved; the new time is below.",
        _K.cancelled: "Your teleconsultation has been cancelled.",
        _K.reminder_24h: "This is a reminder of your teleconsultation.",
        _K.reminder_1h: "Your teleconsultation starts soon.",
        _K.needs_reschedule: "The physician's hours have changed and no longer cover this time. Your booking is kept: "
                             "please choose another time.",
    },
    sms={
        _K.booked: "Your teleconsultation is booked for {when}.",
        _K.changed: "Your teleconsultation has moved to {when}.",
        _K.cancelled: "Your teleconsultation on {when} is cancelled.",
        _K.reminder_24h: "Reminder: teleconsultation on {when}.",
        _K.reminder_1h: "Your teleconsultation starts soon: {when}.",
        _K.needs_reschedule: "The physician's hours changed: please choose a new time instead of {when}.",
    },
    greeting="Hello,",
    when_label="When",
    physician_label="Doctor",
    link_label="Link",
    attend=(
        "Please open the link a few minutes early to check your camera and microphone. "
        "If you cannot attend, please cancel with the same link so that another patient can take the time."
    ),
    rebook="If you still need a consultation, please choose another time with the link.",
    emergency="In an emergency call 103 or 112.",
    regards="Kind regards,",
    automatic="This message was sent automatically; please do not reply.",
    calendar_summary="Teleconsultation with {physician}",
    sms_link="Join or cancel: {link}",
    sms_rebook="Book again: {link}",
    sms_emergency="Emergency: call 103 or 112.",
)

_TEXTS = {"ru": _RU, "en": _EN}

# Control characters (and Unicode line separators) would break the one-line fields of mail headers and SMS.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# CLDR puts narrow and ordinary no-break spaces into times ("2:20 PM"); they would force an English SMS into
# UCS-2 (70 characters a segment) and gain nothing in plain text.
_SPACES = str.maketrans({"\u202f": " ", "\xa0": " "})


def compose(
    kind: NotificationKind | str,
    *,
    locale: str,
    starts_at: dt.datetime,
    time_zone: str,
    physician_name: str,
    link: str,
    clinic_name: str,
) -> Message:
    """The notice of one kind for one patient, its time shown in the patient's IANA `time_zone`."""
    kind = NotificationKind(kind)
    babel_locale = _locale(locale)
    texts = _TEXTS[babel_locale.language]
    physician = _one_line(physician_name, "physician_name")
    clinic = _one_line(clinic_name, "clinic_name")
    link = _link(link)
    when_long = format_when(starts_at, locale=locale, time_zone=time_zone)
    when_short = format_when(starts_at, locale=locale, time_zone=time_zone, short=True)
    rebooking = kind in (NotificationKind.cancelled, NotificationKind.needs_reschedule)
    advice = texts.rebook if rebooking else texts.attend

    text = "\n".join(
        [
            texts.greeting,
            "",
            texts.lead[kind],
            "",
            f"{texts.when_label}: {when_long}",
            f"{texts.physician_label}: {physician}",
            f"{texts.link_label}: {link}",
            "",
            advice,
            "",
            texts.emergency,
            "",
            texts.regards,
            clinic,
            "",
            texts.automatic,
            "",
        ]
    )
    return Message(
        language=babel_locale.language,
        subject=texts.subject[kind],
        text=text,
        sms=_sms(texts, kind, when=when_short, link=link, clinic=clinic),
        calendar_summary=texts.calendar_summary.format(physician=physician),
        calendar_description=f"{link}\n\n{advice}\n{texts.emergency}",
    )


def format_when(starts_at: dt.datetime, *, locale: str, time_zone: str, short: bool = False) -> str:
    """The local date and time with its zone, e.g. "воскресенье, 28 марта 2027 г., 15:20 (Москва, UTC+3)"."""
    if starts_at.tzinfo is None or starts_at.utcoffset() is None:
        raise ValueError("starts_at must be timezone-aware")
    babel_locale = _locale(locale)
    zone = _zone(time_zone)
    local = starts_at.astimezone(zone)
    date = format_skeleton("MMMd", local, locale=babel_locale) if short else format_date(
        local, "full", locale=babel_locale
    )
    time = format_time(local, "short", locale=babel_locale)
    return f"{date}, {time} ({_zone_label(zone, local, babel_locale)})".translate(_SPACES)


def sms_segments(text: str) -> int:
    """How many SMS segments `text` takes: GSM-7 if every character has a GSM-7 code, UCS-2 otherwise."""
    if all(char in _GSM7_BASIC or char in _GSM7_EXTENSION for char in text):
        units = len(text) + sum(char in _GSM7_EXTENSION for char in text)  # escaped characters take two septets
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)


_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


def _sms(texts: _Texts, kind: NotificationKind, *, when: str, link: str, clinic: str) -> str:
    rebooking = kind in (NotificationKind.cancelled, NotificationKind.needs_reschedule)
    action = texts.sms_rebook if rebooking else texts.sms_link
    # The link is followed by a space, never by punctuation a phone would take into the address.
    body = f"{texts.sms[kind].format(when=when)} {action.format(link=link)} {texts.sms_emergency}"
    for candidate in (f"{clinic}: {body}", body):  # the clinic's name is the first thing to go
        if sms_segments(candidate) <= SMS_MAX_SEGMENTS:
            return candidate
    raise ValueError(f"the SMS does not fit in {SMS_MAX_SEGMENTS} segments; the link is too long")


def _locale(locale: str) -> Locale:
    try:
        parsed = Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError) as exc:
        raise ValueError(f"unknown locale {locale!r}") from exc
    if parsed.language not in _TEXTS:
        raise ValueError(f"no notice texts for locale {locale!r}; have {sorted(_TEXTS)}")
    return parsed


def _zone(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {time_zone!r}") from exc


def _zone_label(zone: ZoneInfo, local: dt.datetime, locale: Locale) -> str:
    """The zone's city in the patient's language and the UTC offset in force then, e.g. "Берлин, UTC+2"."""
    offset = local.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    utc = "UTC" if minutes == 0 else f"UTC{'+' if minutes > 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")
    key = zone.key or ""
    if "/" not in key or key.startswith("Etc/"):  # UTC, Etc/GMT-3, ...: no city to name
        return utc
    city = get_timezone_location(zone, locale=locale, return_city=True)
    return f"{city.rsplit('/', 1)[-1].replace('_', ' ')}, {utc}"


def _one_line(value: str, what: str, *, max_chars: int = 200) -> str:
    value = value.strip()
    if not value or len(value) > max_chars or _CONTROL.search(value):
        raise ValueError(f"{what} must be one line of 1 to {max_chars} characters")
    return value


def _link(link: str) -> str:
    parts = urlsplit(link)
    if (
        parts.scheme not in ("https", "http")
        or not parts.netloc
        or len(link) > 500
        or _CONTROL.search(link)
        or any(char.isspace() for char in link)
    ):
        raise ValueError("link must be an absolute http(s) URL without spaces")
    return link
