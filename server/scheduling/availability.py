"""Physicians' hours, and the free slots derived from them."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import User
from server.http.problems import NotFound
from server.people.models import Physician
from server.scheduling import outbox, rules
from server.scheduling.models import (
    RELEASED_STATUSES,
    AvailabilityException,
    Consultation,
    ConsultationStatus,
    WeeklyAvailability,
)


async def physician(session: AsyncSession, physician_id: uuid.UUID) -> tuple[Physician, User]:
    row = (await session.execute(select(Physician, User).join(User, User.id == Physician.user_id)
                                 .where(Physician.id == physician_id, User.is_active.is_(True)))).one_or_none()
    if row is None:
        raise NotFound()
    return row[0], row[1]


async def weekly_availability(session: AsyncSession, *, physician_id: uuid.UUID) -> list[WeeklyAvailability]:
    """A physician's recurring hours, Monday first, in their own time zone."""
    rows = await session.scalars(
        select(WeeklyAvailability).where(WeeklyAvailability.physician_id == physician_id)
        .order_by(WeeklyAvailability.weekday, WeeklyAvailability.start_time)
    )
    return list(rows.all())


async def exceptions(session: AsyncSession, *, physician_id: uuid.UUID, since: dt.date) -> list[AvailabilityException]:
    rows = await session.scalars(select(AvailabilityException).where(
        AvailabilityException.physician_id == physician_id, AvailabilityException.day >= since)
        .order_by(AvailabilityException.day, AvailabilityException.start_time))
    return list(rows.all())


def _weekly_rules(rows: list[WeeklyAvailability]) -> list[rules.WeeklyHours]:
    return [rules.WeeklyHours(r.weekday, rules.Hours(r.start_time, r.end_time, r.slot_minutes)) for r in rows]


def _exception_rules(rows: list[AvailabilityException]) -> list[rules.DayException]:
    return [rules.DayException(r.day, r.kind, rules.Hours(r.start_time, r.end_time, r.slot_minutes)
                               if r.start_time and r.end_time else None) for r in rows]


async def schedule_slots(session: AsyncSession, *, physician_id: uuid.UUID, zone: ZoneInfo, now: dt.datetime,
                         weeks: int) -> list[rules.SlotTime]:
    """Every slot the physician's hours offer from today (their date) for `weeks` weeks, booked or not."""
    today = now.astimezone(zone).date()
    weekly = await weekly_availability(session, physician_id=physician_id)
    extra = await exceptions(session, physician_id=physician_id, since=today)
    return rules.generate_slots(_weekly_rules(weekly), _exception_rules(extra), zone=zone, first_day=today,
                                days=weeks * 7, now=now)


@dataclass(frozen=True)
class FreeSlot:
    physician_id: uuid.UUID
    physician_name: str
    specialty: str
    time_zone: str
    starts_at: dt.datetime
    ends_at: dt.datetime


async def _taken(session: AsyncSession, physician_id: uuid.UUID, since: dt.datetime) -> set[dt.datetime]:
    rows = await session.scalars(select(Consultation.starts_at).where(
        Consultation.physician_id == physician_id, Consultation.starts_at >= since,
        Consultation.status.not_in(RELEASED_STATUSES)))
    return set(rows.all())


async def free_slots(session: AsyncSession, *, now: dt.datetime, weeks: int, physician_id: uuid.UUID | None = None,
                     specialty: str | None = None, date_from: dt.date | None = None,
                     date_to: dt.date | None = None, limit: int = 200) -> list[FreeSlot]:
    """Bookable slots, soonest first, by physician and/or specialty within a date range (physician-local dates).

    Slots are derived a week at a time for all matching physicians, stopping once `limit` are found: the
    first page of a search costs one week of slots, not the whole booking horizon.
    """
    query = select(Physician, User).join(User, User.id == Physician.user_id).where(User.is_active.is_(True))
    if physician_id is not None:
        query = query.where(Physician.id == physician_id)
    if specialty is not None:
        query = query.where(Physician.specialty == specialty)
    plans = []
    for doctor, user in (await session.execute(query)).all():
        zone = ZoneInfo(doctor.time_zone)
        today = now.astimezone(zone).date()
        weekly = _weekly_rules(await weekly_availability(session, physician_id=doctor.id))
        extra = _exception_rules(await exceptions(session, physician_id=doctor.id, since=today))
        first = max(today, date_from) if date_from else today
        last = min(today + dt.timedelta(days=weeks * 7 - 1), date_to) if date_to else \
            today + dt.timedelta(days=weeks * 7 - 1)
        plans.append((doctor, user, zone, weekly, extra, first, last, await _taken(session, doctor.id, now)))
    found: list[FreeSlot] = []
    for week in range(weeks):
        for doctor, user, zone, weekly, extra, first, last, taken in plans:
            start = first + dt.timedelta(days=7 * week)
            if start > last:
                continue
            days = min(7, (last - start).days + 1)
            for slot in rules.generate_slots(weekly, extra, zone=zone, first_day=start, days=days, now=now):
                if slot.starts_at not in taken:
                    found.append(FreeSlot(doctor.id, user.full_name, doctor.specialty, doctor.time_zone,
                                          slot.starts_at, slot.ends_at))
        if len(found) >= limit:
            break  # later weeks can only hold later slots
    return sorted(found, key=lambda s: (s.starts_at, s.physician_name))[:limit]


async def bookings_outside_hours(session: AsyncSession, *, physician_id: uuid.UUID, zone: ZoneInfo,
                                 now: dt.datetime, weeks: int) -> list[Consultation]:
    """Upcoming bookings the physician's current hours no longer cover."""
    offered = {slot.starts_at for slot in await schedule_slots(session, physician_id=physician_id, zone=zone,
                                                               now=now, weeks=weeks + 26)}
    upcoming = (await session.scalars(select(Consultation).where(
        Consultation.physician_id == physician_id, Consultation.starts_at > now,
        Consultation.status == ConsultationStatus.scheduled))).all()
    return [c for c in upcoming if c.starts_at not in offered]


async def replace_weekly_hours(session: AsyncSession, *, physician_id: uuid.UUID,
                               hours: list[rules.WeeklyHours], ctx: AuditContext, now: dt.datetime,
                               weeks: int) -> list[Consultation]:
    """Set the weekly pattern. Bookings it no longer covers are kept and flagged for rescheduling
    (never silently dropped); they are returned so the caller can tell the physician and the patients."""
    doctor, _ = await physician(session, physician_id)
    await session.execute(delete(WeeklyAvailability).where(WeeklyAvailability.physician_id == physician_id))
    for rule in hours:
        session.add(WeeklyAvailability(physician_id=physician_id, weekday=rule.weekday, start_time=rule.hours.start,
                                       end_time=rule.hours.end, slot_minutes=rule.hours.slot_minutes))
    await session.flush()
    affected = await _flag_uncovered(session, doctor, now=now, weeks=weeks)
    await audit.record(session, ctx=ctx, action="schedule.weekly_hours_set", object_type="physician",
                       object_id=physician_id, detail={"ranges": len(hours), "affected": len(affected)}, now=now)
    return affected


async def add_exception(session: AsyncSession, *, physician_id: uuid.UUID, day: dt.date,
                        kind: rules.ExceptionKind, hours: rules.Hours | None, ctx: AuditContext, now: dt.datetime,
                        weeks: int) -> tuple[AvailabilityException, list[Consultation]]:
    doctor, _ = await physician(session, physician_id)
    exception = AvailabilityException(physician_id=physician_id, day=day, kind=kind,
                                      start_time=hours.start if hours else None,
                                      end_time=hours.end if hours else None,
                                      slot_minutes=hours.slot_minutes if hours else 20)
    session.add(exception)
    await session.flush()
    affected = await _flag_uncovered(session, doctor, now=now, weeks=weeks)
    await audit.record(session, ctx=ctx, action="schedule.exception_added", object_type="physician",
                       object_id=physician_id, detail={"kind": kind.value, "affected": len(affected)}, now=now)
    return exception, affected


async def remove_exception(session: AsyncSession, *, physician_id: uuid.UUID, exception_id: uuid.UUID,
                           ctx: AuditContext, now: dt.datetime, weeks: int) -> list[Consultation]:
    doctor, _ = await physician(session, physician_id)
    found = await session.get(AvailabilityException, exception_id)
    if found is None or found.physician_id != physician_id:
        raise NotFound()
    await session.delete(found)
    await session.flush()
    affected = await _flag_uncovered(session, doctor, now=now, weeks=weeks)
    await audit.record(session, ctx=ctx, action="schedule.exception_removed", object_type="physician",
                       object_id=physician_id, now=now)
    return affected


async def _flag_uncovered(session: AsyncSession, doctor: Physician, *, now: dt.datetime,
                          weeks: int) -> list[Consultation]:
    affected = await bookings_outside_hours(session, physician_id=doctor.id, zone=ZoneInfo(doctor.time_zone),
                                            now=now, weeks=weeks)
    newly = [c for c in affected if not c.needs_reschedule]
    for consultation in newly:
        consultation.needs_reschedule = True
        await outbox.enqueue(session, consultation=consultation, kind="needs_reschedule", now=now)
    await session.flush()
    return newly
