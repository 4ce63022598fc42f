"""Pure scheduling decisions: which slots exist, which state changes are legal, which windows are open.

No I/O and no clock: callers pass `now`. Times of day are the physician's wall clock in their zone;
everything returned is aware UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from server.scheduling.models import ConsultationKind, ConsultationStatus, ExceptionKind


@dataclass(frozen=True)
class Hours:
    """A range of wall-clock hours cut into slots."""

    start: dt.time
    end: dt.time
    slot_minutes: int


@dataclass(frozen=True)
class WeeklyHours:
    weekday: int  # 0 = Monday
    hours: Hours


@dataclass(frozen=True)
class DayException:
    day: dt.date
    kind: ExceptionKind
    hours: Hours | None = None


@dataclass(frozen=True, order=True)
class SlotTime:
    starts_at: dt.datetime  # aware UTC
    ends_at: dt.datetime


def _local_to_utc(day: dt.date, clock: dt.time, zone: ZoneInfo) -> dt.datetime | None:
    """The UTC instant of a wall-clock time, or None if that time does not exist that day (spring forward).

    In the repeated hour of an autumn change the first occurrence is used, so no slot appears twice.
    """
    local = dt.datetime.combine(day, clock, tzinfo=zone).replace(fold=0)
    instant = local.astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant


def _cut(day: dt.date, hours: Hours, zone: ZoneInfo) -> list[SlotTime]:
    """Slots of exactly `slot_minutes` of real time whose start and end read as the expected wall clock.

    A slot that a clock change would stretch or squeeze (it crosses the change) is not offered.
    """
    slots = []
    step = dt.timedelta(minutes=hours.slot_minutes)
    cursor = dt.datetime.combine(day, hours.start)
    end = dt.datetime.combine(day, hours.end)
    while cursor + step <= end:
        starts = _local_to_utc(day, cursor.time(), zone)
        if starts is not None:
            ends = starts + step
            if ends.astimezone(zone).replace(tzinfo=None) == cursor + step:
                slots.append(SlotTime(starts, ends))
        cursor += step
    return slots


def generate_slots(weekly: Iterable[WeeklyHours], exceptions: Iterable[DayException], *, zone: ZoneInfo,
                   first_day: dt.date, days: int, now: dt.datetime) -> list[SlotTime]:
    """Every future slot from `first_day` for `days` days (physician-local dates), in time order."""
    by_weekday: dict[int, list[Hours]] = {}
    for rule in weekly:
        by_weekday.setdefault(rule.weekday, []).append(rule.hours)
    days_off = {e.day for e in exceptions if e.kind is ExceptionKind.day_off}
    extra: dict[dt.date, list[Hours]] = {}
    for exception in exceptions:
        if exception.kind is ExceptionKind.extra_hours and exception.hours is not None:
            extra.setdefault(exception.day, []).append(exception.hours)
    found: set[SlotTime] = set()
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        ranges = [] if day in days_off else list(by_weekday.get(day.weekday(), []))
        ranges += extra.get(day, [])
        for hours in ranges:
            found.update(slot for slot in _cut(day, hours, zone) if slot.starts_at > now)
    return sorted(found)


def covers(slots: Iterable[SlotTime], starts_at: dt.datetime) -> SlotTime | None:
    """The slot that starts exactly at `starts_at`, if the schedule has one."""
    for slot in slots:
        if slot.starts_at == starts_at:
            return slot
    return None


# --- the consultation's life -----------------------------------------------------------------------

S = ConsultationStatus
TRANSITIONS: dict[ConsultationStatus, frozenset[ConsultationStatus]] = {
    S.scheduled: frozenset({S.waiting, S.cancelled, S.no_show, S.refused}),
    S.waiting: frozenset({S.in_call, S.cancelled, S.refused, S.no_show}),
    S.in_call: frozenset({S.completed, S.interrupted}),
    S.interrupted: frozenset({S.in_call, S.completed}),
    S.completed: frozenset({S.documented}),
    S.documented: frozenset(),
    S.cancelled: frozenset(),
    S.no_show: frozenset(),
    S.refused: frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, current: ConsultationStatus, target: ConsultationStatus) -> None:
        super().__init__(f"a {current.value} consultation cannot become {target.value}")
        self.current, self.target = current, target


def transition(current: ConsultationStatus, target: ConsultationStatus) -> ConsultationStatus:
    """`target` if the state machine allows it from `current`, else IllegalTransition."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


def may_change_booking(starts_at: dt.datetime, *, now: dt.datetime, cutoff: dt.timedelta) -> bool:
    """Patients cancel or reschedule only until the cut-off before the start (staff are not bound)."""
    return now <= starts_at - cutoff


def checkin_open(starts_at: dt.datetime, *, now: dt.datetime, opens_before: dt.timedelta,
                 grace: dt.timedelta) -> bool:
    """From `opens_before` the start until the no-show grace has passed."""
    return starts_at - opens_before <= now <= starts_at + grace


def is_no_show(status: ConsultationStatus, starts_at: dt.datetime, *, now: dt.datetime,
               grace: dt.timedelta) -> bool:
    """Nobody checked in by the end of the grace period."""
    return status is ConsultationStatus.scheduled and now > starts_at + grace


def kind_allowed(kind: ConsultationKind, *, allows_primary: bool, allows_repeat: bool,
                 has_prior_diagnosis: bool) -> str | None:
    """None if this kind of consultation may be booked for the condition, else the reason it may not."""
    if kind is ConsultationKind.primary and not allows_primary:
        return "primary_not_allowed"
    if kind is ConsultationKind.repeat:
        if not allows_repeat:
            return "repeat_not_allowed"
        if not has_prior_diagnosis:
            return "no_prior_diagnosis"
    return None
