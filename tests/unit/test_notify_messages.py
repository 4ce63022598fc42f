"""The words of consultation notices: languages, the patient's time zone (across DST), SMS size, kinds."""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.notify.messages import (
    SMS_MAX_SEGMENTS,
    NotificationKind,
    compose,
    format_when,
    sms_segments,
)

LINK = "https://telemed.clinic.example/c/3f2b8c1e-5d2a-4c6e-9a7b-1e2d3c4b5a69"
STARTS_AT = dt.datetime(2027, 3, 12, 11, 20, tzinfo=dt.UTC)


def _compose(kind: NotificationKind | str = "booked", **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "locale": "ru",
        "starts_at": STARTS_AT,
        "time_zone": "Europe/Moscow",
        "physician_name": "Иванова Анна Петровна",
        "link": LINK,
        "clinic_name": "Клиника «Здоровье»",
    }
    values.update(overrides)
    return compose(kind, **values)


def test_compose_takes_only_time_physician_link_and_clinic() -> None:
    # Nothing can carry a reason for the visit: no parameter for it and no **kwargs to smuggle it in.
    parameters = inspect.signature(compose).parameters
    assert list(parameters) == ["kind", "locale", "starts_at", "time_zone", "physician_name", "link", "clinic_name"]
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters.values())
    with pytest.raises(TypeError):
        _compose(complaint="кашель")


def test_compose_russian_booking() -> None:
    message = _compose()
    assert message.language == "ru"
    assert message.subject == "Вы записаны на телеконсультацию"
    assert "Когда: пятница, 12 марта 2027 г., 14:20 (Москва, UTC+3)\n" in message.text
    assert "Врач: Иванова Анна Петровна\n" in message.text
    assert f"Ссылка: {LINK}\n" in message.text
    assert "отмените запись по той же ссылке" in message.text
    assert "В экстренной ситуации звоните 103 или 112." in message.text
    assert message.text.rstrip().endswith("отвечать на него не нужно.")
    assert message.calendar_summary == "Телеконсультация: врач Иванова Анна Петровна"
    assert message.calendar_description.startswith(LINK)
    assert "103 или 112" in message.calendar_description


def test_compose_english_booking() -> None:
    message = _compose(locale="en", physician_name="Dr Anna Ivanova", clinic_name="Health clinic")
    assert message.language == "en"
    assert message.subject == "Your teleconsultation is booked"
    assert "When: Friday, March 12, 2027, 2:20 PM (Moscow, UTC+3)\n" in message.text
    assert "Doctor: Dr Anna Ivanova\n" in message.text
    assert "If you cannot attend, please cancel with the same link" in message.text
    assert "In an emergency call 103 or 112." in message.text
    assert message.calendar_summary == "Teleconsultation with Dr Anna Ivanova"
    assert message.sms.startswith("Health clinic: Your teleconsultation is booked for Mar 12, 2:20 PM (Moscow, UTC+3).")


def test_compose_regional_locale_uses_its_formats() -> None:
    message = _compose(locale="en-GB", physician_name="Dr Anna Ivanova")
    assert "When: Friday, 12 March 2027, 14:20 (Moscow, UTC+3)" in message.text


@pytest.mark.parametrize("locale", ["ru", "en"])
@pytest.mark.parametrize("kind", list(NotificationKind))
def test_compose_every_kind_has_its_own_words_and_the_essentials(kind: NotificationKind, locale: str) -> None:
    message = _compose(kind, locale=locale)
    others = {_compose(other, locale=locale).subject for other in NotificationKind if other is not kind}
    assert message.subject not in others
    assert LINK in message.text
    assert LINK in message.sms
    for number in ("103", "112"):
        assert number in message.text
        assert number in message.sms
    assert sms_segments(message.sms) <= SMS_MAX_SEGMENTS
    cancel_advice = "отмените запись" if locale == "ru" else "please cancel"
    rebook_advice = "выберите другое время" if locale == "ru" else "choose another time"
    # a cancelled or uncovered consultation needs a new time; any other notice says how to cancel
    rebooking = kind in (NotificationKind.cancelled, NotificationKind.needs_reschedule)
    expected, unexpected = (rebook_advice, cancel_advice) if rebooking else (cancel_advice, rebook_advice)
    assert expected in message.text
    assert unexpected not in message.text


def test_compose_accepts_kind_as_string_and_rejects_unknown_kind() -> None:
    assert _compose("reminder_1h") == _compose(NotificationKind.reminder_1h)
    with pytest.raises(ValueError, match="reminder_2h"):
        _compose("reminder_2h")


def test_format_when_follows_berlin_across_the_march_dst_change() -> None:
    # 2027-03-28 01:00 UTC: Berlin moves from UTC+1 to UTC+2; the clocks skip 02:00-03:00.
    before = dt.datetime(2027, 3, 28, 0, 30, tzinfo=dt.UTC)
    after = dt.datetime(2027, 3, 28, 1, 30, tzinfo=dt.UTC)
    assert format_when(before, locale="ru", time_zone="Europe/Berlin") == (
        "воскресенье, 28 марта 2027 г., 01:30 (Берлин, UTC+1)"
    )
    assert format_when(after, locale="ru", time_zone="Europe/Berlin") == (
        "воскресенье, 28 марта 2027 г., 03:30 (Берлин, UTC+2)"
    )
    assert format_when(after, locale="en", time_zone="Europe/Berlin", short=True) == "Mar 28, 3:30 AM (Berlin, UTC+2)"


def test_format_when_shows_the_patients_date_not_the_utc_date() -> None:
    late = dt.datetime(2027, 3, 28, 13, 0, tzinfo=dt.UTC)  # already Monday on Kamchatka (UTC+12)
    assert format_when(late, locale="ru", time_zone="Asia/Kamchatka").startswith("понедельник, 29 марта 2027 г., 01:00")


def test_format_when_converts_any_aware_input_and_names_offset_only_zones() -> None:
    moscow_noon = dt.datetime(2027, 3, 12, 14, 20, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert format_when(moscow_noon, locale="ru", time_zone="UTC") == "пятница, 12 марта 2027 г., 11:20 (UTC)"
    assert format_when(STARTS_AT, locale="en", time_zone="Asia/Kolkata").endswith("4:50 PM (Kolkata, UTC+5:30)")
    assert format_when(STARTS_AT, locale="en", time_zone="America/Argentina/Buenos_Aires").endswith(
        "(Buenos Aires, UTC-3)"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"starts_at": dt.datetime(2027, 3, 12, 11, 20)}, "timezone-aware"),  # noqa: DTZ001 - the naive input under test
        ({"time_zone": "Mars/Olympus"}, "time zone"),
        ({"time_zone": "../../etc/passwd"}, "time zone"),
        ({"locale": "de"}, "locale"),
        ({"locale": "xx-nonsense"}, "locale"),
        ({"physician_name": "Иванова\nBcc: someone@example.org"}, "physician_name"),
        ({"physician_name": "  "}, "physician_name"),
        ({"clinic_name": "x" * 201}, "clinic_name"),
        ({"link": "javascript:alert(1)"}, "link"),
        ({"link": "https://clinic.example/c/1 2"}, "link"),
        ({"link": "/c/relative"}, "link"),
    ],
)
def test_compose_rejects_bad_input(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _compose(**override)


def test_sms_drops_a_long_clinic_name_before_failing() -> None:
    message = _compose(clinic_name="Многопрофильный медицинский центр «Здоровье и долголетие»")
    assert message.sms.startswith("Вы записаны на телеконсультацию 12 мар., 14:20 (Москва, UTC+3).")
    assert sms_segments(message.sms) <= SMS_MAX_SEGMENTS
    assert "Многопрофильный" in message.text  # the e-mail keeps it


def test_sms_with_a_link_too_long_for_three_segments_is_refused() -> None:
    with pytest.raises(ValueError, match="segments"):
        _compose(link=f"https://telemed.clinic.example/c/{'a' * 120}")


def test_english_sms_stays_in_the_gsm_alphabet() -> None:
    # CLDR's narrow no-break space in "2:20 PM" would switch the SMS to UCS-2 and 70 characters a segment.
    sms = _compose(locale="en", clinic_name="Health clinic").sms
    assert "\u202f" not in sms
    assert sms_segments(sms) == -(-len(sms) // 153)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("{" * 80, 1),  # extension characters take two septets
        ("{" * 81, 2),
        ("я" * 70, 1),
        ("я" * 71, 2),
        ("я" * 134, 2),
        ("я" * 135, 3),
        ("a" * 69 + "€я", 2),  # one non-GSM character makes the whole text UCS-2
    ],
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


@settings(max_examples=60, deadline=None)
@given(
    # hypothesis takes naive bounds and attaches the zone itself
    starts_at=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2031, 1, 1),  # noqa: DTZ001
                           timezones=st.just(dt.UTC)),
    time_zone=st.sampled_from(["Europe/Moscow", "Europe/Berlin", "Asia/Vladivostok", "America/New_York", "UTC"]),
    locale=st.sampled_from(["ru", "en"]),
    kind=st.sampled_from(list(NotificationKind)),
)
def test_compose_time_is_the_local_time_and_sms_fits(
    starts_at: dt.datetime, time_zone: str, locale: str, kind: NotificationKind
) -> None:
    message = _compose(kind, starts_at=starts_at, time_zone=time_zone, locale="ru" if locale == "ru" else "en-GB")
    local = starts_at.astimezone(ZoneInfo(time_zone))
    assert f", {local:%H:%M} (" in message.text
    assert f", {local:%H:%M} (" in message.sms
    assert sms_segments(message.sms) <= SMS_MAX_SEGMENTS
