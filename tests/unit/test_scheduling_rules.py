"""Slots across time zones and daylight-saving changes; the consultation state machine; windows."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.scheduling.models import ConsultationKind, ConsultationStatus, ExceptionKind
from server.scheduling.rules import (
    TRANSITIONS,
    DayException,
    Hours,
    IllegalTransition,
    WeeklyHours,
    checkin_open,
    generate_slots,
    is_no_show,
    kind_allowed,
    transition,
)

BERLIN = ZoneInfo("Europe/Berlin")
MOSCOW = ZoneInfo("Europe/Moscow")
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def every_day(start: dt.time, end: dt.time, minutes: int = 20) -> list[WeeklyHours]:
    return [WeeklyHours(day, Hours(start, end, minutes)) for day in range(7)]


def test_slots_keep_wall_clock_hours_across_spring_forward() -> None:
    """Berlin moves from UTC+1 to UTC+2 on 2027-03-28: 09:00 local is 08:00 UTC before, 07:00 UTC after."""
    slots = generate_slots(every_day(dt.time(9), dt.time(10)), [], zone=BERLIN, first_day=dt.date(2027, 3, 27),
                           days=2, now=LONG_AGO)
    starts = [s.starts_at for s in slots]
    assert starts == [
        dt.datetime(2027, 3, 27, 8, 0, tzinfo=dt.UTC), dt.datetime(2027, 3, 27, 8, 20, tzinfo=dt.UTC),
        dt.datetime(2027, 3, 27, 8, 40, tzinfo=dt.UTC),
        dt.datetime(2027, 3, 28, 7, 0, tzinfo=dt.UTC), dt.datetime(2027, 3, 28, 7, 20, tzinfo=dt.UTC),
        dt.datetime(2027, 3, 28, 7, 40, tzinfo=dt.UTC),
    ]
    assert all(s.ends_at - s.starts_at == dt.timedelta(minutes=20) for s in slots)


def test_slots_skip_the_hour_that_does_not_exist() -> None:
    """On 2027-03-28 Berlin's clocks jump from 02:00 to 03:00: no slot starts in between."""
    slots = generate_slots(every_day(dt.time(1), dt.time(4), 30), [], zone=BERLIN, first_day=dt.date(2027, 3, 28),
                           days=1, now=LONG_AGO)
    local = [s.starts_at.astimezone(BERLIN).strftime("%H:%M") for s in slots]
    assert local == ["01:00", "03:00", "03:30"]  # 01:30 would end in the gap; 02:xx does not exist


def test_slots_in_the_repeated_autumn_hour_appear_once() -> None:
    """On 2027-10-31 Berlin repeats 02:00-03:00: 02:00 is offered once, and 02:30, which would run into
    the change (30 wall-clock minutes, 90 real ones), is not offered at all."""
    slots = generate_slots(every_day(dt.time(2), dt.time(3, 30), 30), [], zone=BERLIN,
                           first_day=dt.date(2027, 10, 31), days=1, now=LONG_AGO)
    local = [s.starts_at.astimezone(BERLIN).strftime("%H:%M") for s in slots]
    assert local == ["02:00", "03:00"]
    assert all(s.ends_at - s.starts_at == dt.timedelta(minutes=30) for s in slots)


def test_slots_in_moscow_have_no_dst() -> None:
    slots = generate_slots([WeeklyHours(0, Hours(dt.time(9), dt.time(9, 20), 20))], [], zone=MOSCOW,
                           first_day=dt.date(2027, 3, 29), days=7, now=LONG_AGO)
    assert [s.starts_at for s in slots] == [dt.datetime(2027, 3, 29, 6, 0, tzinfo=dt.UTC)]


def test_slots_exceptions_remove_a_day_and_add_hours() -> None:
    weekly = every_day(dt.time(9), dt.time(10), 30)
    exceptions = [DayException(dt.date(2027, 5, 3), ExceptionKind.day_off),
                  DayException(dt.date(2027, 5, 4), ExceptionKind.extra_hours, Hours(dt.time(18), dt.time(19), 30))]
    slots = generate_slots(weekly, exceptions, zone=MOSCOW, first_day=dt.date(2027, 5, 3), days=2, now=LONG_AGO)
    local = [s.starts_at.astimezone(MOSCOW).strftime("%d %H:%M") for s in slots]
    assert local == ["04 09:00", "04 09:30", "04 18:00", "04 18:30"]


def test_slots_in_the_past_are_not_offered() -> None:
    now = dt.datetime(2027, 5, 3, 6, 10, tzinfo=dt.UTC)  # 09:10 in Moscow
    slots = generate_slots(every_day(dt.time(9), dt.time(10), 20), [], zone=MOSCOW, first_day=dt.date(2027, 5, 3),
                           days=1, now=now)
    assert [s.starts_at.astimezone(MOSCOW).strftime("%H:%M") for s in slots] == ["09:20", "09:40"]


@given(st.sampled_from(["Europe/Berlin", "America/New_York", "Europe/Moscow", "Asia/Kolkata", "Australia/Sydney"]),
       st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2030, 12, 31)),
       st.sampled_from([10, 15, 20, 30, 45]))
def test_slots_never_overlap_and_have_their_length(zone_name: str, first_day: dt.date, minutes: int) -> None:
    slots = generate_slots(every_day(dt.time(0), dt.time(23, 59), minutes), [], zone=ZoneInfo(zone_name),
                           first_day=first_day, days=3, now=LONG_AGO)
    assert slots
    for earlier, later in itertools.pairwise(slots):
        assert earlier.ends_at <= later.starts_at
    assert all(s.ends_at - s.starts_at == dt.timedelta(minutes=minutes) for s in slots)


def test_state_machine_allows_the_documented_path() -> None:
    path = [ConsultationStatus.scheduled, ConsultationStatus.waiting, ConsultationStatus.in_call,
            ConsultationStatus.completed, ConsultationStatus.documented]
    for current, target in itertools.pairwise(path):
        assert transition(current, target) is target


@pytest.mark.parametrize(("current", "target"), [
    (ConsultationStatus.scheduled, ConsultationStatus.in_call),  # no call without the waiting room
    (ConsultationStatus.cancelled, ConsultationStatus.scheduled),  # a cancelled booking stays cancelled
    (ConsultationStatus.completed, ConsultationStatus.cancelled),
    (ConsultationStatus.documented, ConsultationStatus.completed),
    (ConsultationStatus.no_show, ConsultationStatus.waiting),
])
def test_state_machine_refuses_illegal_transitions(current: ConsultationStatus, target: ConsultationStatus) -> None:
    with pytest.raises(IllegalTransition):
        transition(current, target)


def test_state_machine_final_states_have_no_exit() -> None:
    for final in (ConsultationStatus.documented, ConsultationStatus.cancelled, ConsultationStatus.no_show,
                  ConsultationStatus.refused):
        assert TRANSITIONS[final] == frozenset()


def test_windows_check_in_and_no_show() -> None:
    start = dt.datetime(2027, 5, 3, 6, 0, tzinfo=dt.UTC)
    opens, grace = dt.timedelta(minutes=15), dt.timedelta(minutes=15)
    assert not checkin_open(start, now=start - dt.timedelta(minutes=16), opens_before=opens, grace=grace)
    assert checkin_open(start, now=start - dt.timedelta(minutes=15), opens_before=opens, grace=grace)
    assert checkin_open(start, now=start + dt.timedelta(minutes=15), opens_before=opens, grace=grace)
    assert not is_no_show(ConsultationStatus.scheduled, start, now=start + grace, grace=grace)
    assert is_no_show(ConsultationStatus.scheduled, start, now=start + grace + dt.timedelta(seconds=1), grace=grace)
    assert not is_no_show(ConsultationStatus.waiting, start, now=start + grace * 2, grace=grace)


def test_kind_repeat_needs_a_prior_diagnosis() -> None:
    assert kind_allowed(ConsultationKind.repeat, allows_primary=False, allows_repeat=True,
                        has_prior_diagnosis=False) == "no_prior_diagnosis"
    assert kind_allowed(ConsultationKind.repeat, allows_primary=False, allows_repeat=True,
                        has_prior_diagnosis=True) is None
    assert kind_allowed(ConsultationKind.primary, allows_primary=False, allows_repeat=True,
                        has_prior_diagnosis=True) == "primary_not_allowed"
