"""A consultation's life: booking with screening, changes, check-in, admission, the end, no-shows.

Refusals that must leave a trace (a red flag at booking or check-in) are returned, not raised, so the
caller commits the recorded event before answering.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from consent import services as consent
from consent.problems import ConsentRequired
from consent.rules import GatePolicy
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.models import Role
from server.http.problems import FieldError, NotFound, ValidationFailed
from server.people.models import Patient, Physician
from server.scheduling import availability, conditions, outbox, rules
from server.scheduling.models import (
    RELEASED_STATUSES,
    Consultation,
    ConsultationKind,
    ConsultationStatus,
    Questionnaire,
    ScreeningEvent,
    ScreeningStage,
)
from server.scheduling.problems import (
    CheckinClosed,
    IllegalStatusChange,
    KindNotAllowed,
    OverlappingConsultation,
    SlotTaken,
    SlotUnavailable,
    TooLateToChange,
)
from server.scheduling.screening import AnswerError, QuestionnaireDefinition, Rule, RuleKind, evaluate, validate_answers
from server.settings import Settings

CHECKIN_QUESTIONNAIRE = "checkin"


@dataclass(frozen=True)
class Viewer:
    """Who acts on a consultation, with the ids that decide what they may see."""

    user_id: uuid.UUID
    role: Role
    patient_id: uuid.UUID | None = None
    physician_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Windows:
    """The clinic's time rules, from settings."""

    weeks_ahead: int = 4
    cutoff: dt.timedelta = dt.timedelta(hours=2)
    checkin_opens: dt.timedelta = dt.timedelta(minutes=15)
    no_show_grace: dt.timedelta = dt.timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> Windows:
        return cls(weeks_ahead=settings.booking_weeks_ahead,
                   cutoff=dt.timedelta(minutes=settings.booking_cutoff_minutes),
                   checkin_opens=dt.timedelta(minutes=settings.checkin_opens_minutes),
                   no_show_grace=dt.timedelta(minutes=settings.no_show_grace_minutes))


@dataclass(frozen=True)
class ScreeningRefusal:
    """The booking or check-in was stopped; `event` is recorded for the clinic."""

    event: ScreeningEvent
    rules: list[Rule]

    @property
    def red_flag(self) -> bool:
        return any(rule.kind is RuleKind.red_flag for rule in self.rules)


def _screen(questionnaire: Questionnaire, answers: dict[str, Any]) -> tuple[dict[str, Any], list[Rule]]:
    definition = QuestionnaireDefinition.model_validate(questionnaire.definition)
    try:
        clean = validate_answers(definition, answers)
    except AnswerError as error:
        field = f"answers.{error.field}"
        raise ValidationFailed(f"{field}: {error.message}", errors=[
            FieldError(field=field, message=error.message, type="screening_answer")]) from None
    return clean, evaluate(definition, clean)


async def _record_stop(session: AsyncSession, *, patient_id: uuid.UUID, physician_id: uuid.UUID | None,
                       consultation_id: uuid.UUID | None, questionnaire: Questionnaire, stage: ScreeningStage,
                       triggered: list[Rule], answers: dict[str, Any], ctx: AuditContext,
                       now: dt.datetime) -> ScreeningRefusal:
    kind = RuleKind.red_flag if any(r.kind is RuleKind.red_flag for r in triggered) else RuleKind.in_person
    event = ScreeningEvent(patient_id=patient_id, physician_id=physician_id, consultation_id=consultation_id,
                           questionnaire_id=questionnaire.id, stage=stage, rule_ids=[r.id for r in triggered],
                           kind=kind.value, answers=answers, at=now)
    session.add(event)
    await session.flush()
    await audit.record(session, ctx=ctx, action=f"screening.{kind.value}", object_type="screening_event",
                       object_id=event.id, subject_patient_id=patient_id, detail={"stage": stage.value}, now=now)
    return ScreeningRefusal(event, triggered)


async def _slot_for(session: AsyncSession, physician: Physician, starts_at: dt.datetime, *, now: dt.datetime,
                    weeks: int) -> rules.SlotTime:
    slots = await availability.schedule_slots(session, physician_id=physician.id, zone=ZoneInfo(physician.time_zone),
                                              now=now, weeks=weeks)
    slot = rules.covers(slots, starts_at.astimezone(dt.UTC))
    if slot is None:
        raise SlotUnavailable(errors=[FieldError(field="starts_at", message="not a free time of this physician",
                                                 type="slot_unavailable")])
    return slot


async def _check_physician_free(session: AsyncSession, *, physician_id: uuid.UUID, slot: rules.SlotTime,
                                ignore: uuid.UUID | None = None) -> None:
    """No live booking of this physician may overlap the slot, whatever its start: hours can change slot
    length or overlap, so equal start times (the unique index) are not enough on their own."""
    await session.execute(select(Physician.id).where(Physician.id == physician_id).with_for_update())
    query = select(Consultation.id).where(
        Consultation.physician_id == physician_id, Consultation.status.not_in(RELEASED_STATUSES),
        Consultation.starts_at < slot.ends_at, Consultation.ends_at > slot.starts_at)
    if ignore is not None:
        query = query.where(Consultation.id != ignore)
    if (await session.scalars(query)).first() is not None:
        raise SlotTaken()


async def _check_overlap(session: AsyncSession, *, patient_id: uuid.UUID, slot: rules.SlotTime,
                         ignore: uuid.UUID | None = None) -> None:
    # Lock the patient's row: two bookings of one patient then run one after the other (PostgreSQL;
    # SQLite's writers are serialised already), so the overlap check cannot be raced.
    await session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update())
    query = select(Consultation.id).where(
        Consultation.patient_id == patient_id, Consultation.status.not_in(RELEASED_STATUSES),
        Consultation.starts_at < slot.ends_at, Consultation.ends_at > slot.starts_at)
    if ignore is not None:
        query = query.where(Consultation.id != ignore)
    if (await session.scalars(query)).first() is not None:
        raise OverlappingConsultation()


async def _insert_holding_slot(session: AsyncSession, consultation: Consultation) -> None:
    """Flush in a savepoint: the partial unique index turns a lost race into a clean 409."""
    try:
        async with session.begin_nested():
            session.add(consultation)
            await session.flush()
    except IntegrityError:
        raise SlotTaken() from None


async def book(session: AsyncSession, *, patient_id: uuid.UUID, physician_id: uuid.UUID, starts_at: dt.datetime,
               condition_code: str, kind: ConsultationKind, answers: dict[str, Any], complaint: str,
               ctx: AuditContext, now: dt.datetime, windows: Windows) -> Consultation | ScreeningRefusal:
    """Screen, then book the slot for the patient; one booking per slot whatever the concurrency."""
    condition = await conditions.current_condition(session, condition_code)
    prior = await conditions.has_prior_diagnosis(session, patient_id=patient_id, condition_code=condition_code) \
        if kind is ConsultationKind.repeat else False
    reason = rules.kind_allowed(kind, allows_primary=condition.allows_primary, allows_repeat=condition.allows_repeat,
                                has_prior_diagnosis=prior)
    if reason is not None:
        raise KindNotAllowed(code=reason, errors=[FieldError(field="kind", message=reason.replace("_", " "),
                                                             type=reason)])
    questionnaire = await conditions.current_questionnaire(session, condition.questionnaire_code)
    clean, triggered = _screen(questionnaire, answers)
    doctor, _ = await availability.physician(session, physician_id)
    if triggered:
        return await _record_stop(session, patient_id=patient_id, physician_id=physician_id, consultation_id=None,
                                  questionnaire=questionnaire, stage=ScreeningStage.booking, triggered=triggered,
                                  answers=clean, ctx=ctx, now=now)
    slot = await _slot_for(session, doctor, starts_at, now=now, weeks=windows.weeks_ahead)
    await _check_physician_free(session, physician_id=physician_id, slot=slot)
    await _check_overlap(session, patient_id=patient_id, slot=slot)
    if ctx.actor_user_id is None:
        raise ValueError("a booking is made by someone")
    consultation = Consultation(patient_id=patient_id, physician_id=physician_id, condition_id=condition.id,
                                kind=kind, starts_at=slot.starts_at, ends_at=slot.ends_at, complaint=complaint,
                                questionnaire_id=questionnaire.id, screening_answers=clean,
                                booked_by_user_id=ctx.actor_user_id, created_at=now)
    await _insert_holding_slot(session, consultation)
    await audit.record(session, ctx=ctx, action="consultation.booked", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=patient_id, detail={"kind": kind.value}, now=now)
    await outbox.enqueue(session, consultation=consultation, kind="booked", now=now)
    return consultation


async def load(session: AsyncSession, consultation_id: uuid.UUID, viewer: Viewer, *,
               for_change: bool = False) -> Consultation:
    """The consultation if this viewer may see it; otherwise 404, exactly as if it did not exist.

    `for_change` locks the row (PostgreSQL; SQLite's writers are serialised anyway), so two changes (a
    check-in and the no-show job, an admission and a cancellation) happen one after the other and the
    second sees the first's result instead of overwriting it.
    """
    query = select(Consultation).where(Consultation.id == consultation_id)
    if for_change:
        query = query.with_for_update().execution_options(populate_existing=True)
    consultation = (await session.scalars(query)).one_or_none()
    if consultation is None or not may_see(consultation, viewer):
        raise NotFound()
    return consultation


def may_see(consultation: Consultation, viewer: Viewer) -> bool:
    if viewer.role is Role.admin:
        return True
    if viewer.role is Role.patient:
        return consultation.patient_id == viewer.patient_id
    if viewer.role is Role.physician:
        return consultation.physician_id == viewer.physician_id
    return False  # QA experts see consultations through their assigned reviews (a later issue)


def _move(consultation: Consultation, target: ConsultationStatus) -> None:
    try:
        consultation.status = rules.transition(consultation.status, target)
    except rules.IllegalTransition as exc:
        raise IllegalStatusChange(str(exc)) from None


async def cancel(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, ctx: AuditContext,
                 now: dt.datetime, windows: Windows) -> Consultation:
    consultation = await load(session, consultation_id, viewer, for_change=True)
    if viewer.role is Role.patient and not rules.may_change_booking(consultation.starts_at, now=now,
                                                                    cutoff=windows.cutoff):
        raise TooLateToChange()
    _move(consultation, ConsultationStatus.cancelled)
    consultation.cancelled_at, consultation.cancelled_by_user_id = now, viewer.user_id
    consultation.sequence += 1
    await audit.record(session, ctx=ctx, action="consultation.cancelled", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id, now=now)
    await outbox.enqueue(session, consultation=consultation, kind="cancelled", now=now)
    return consultation


async def reschedule(session: AsyncSession, *, consultation_id: uuid.UUID, starts_at: dt.datetime, viewer: Viewer,
                     ctx: AuditContext, now: dt.datetime, windows: Windows) -> Consultation:
    """Move a scheduled consultation to another free slot of the same physician."""
    consultation = await load(session, consultation_id, viewer, for_change=True)
    if consultation.status is not ConsultationStatus.scheduled:
        raise IllegalStatusChange(f"a {consultation.status.value} consultation cannot be moved")
    if viewer.role is Role.patient and not rules.may_change_booking(consultation.starts_at, now=now,
                                                                    cutoff=windows.cutoff):
        raise TooLateToChange()
    doctor, _ = await availability.physician(session, consultation.physician_id)
    slot = await _slot_for(session, doctor, starts_at, now=now, weeks=windows.weeks_ahead)
    await _check_physician_free(session, physician_id=doctor.id, slot=slot, ignore=consultation.id)
    await _check_overlap(session, patient_id=consultation.patient_id, slot=slot, ignore=consultation.id)
    try:
        async with session.begin_nested():
            consultation.starts_at, consultation.ends_at = slot.starts_at, slot.ends_at
            consultation.sequence += 1
            consultation.needs_reschedule = False
            await session.flush()
    except IntegrityError:
        raise SlotTaken() from None
    await audit.record(session, ctx=ctx, action="consultation.rescheduled", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id, now=now)
    await outbox.enqueue(session, consultation=consultation, kind="changed", now=now)
    return consultation


async def check_in(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, answers: dict[str, Any],
                   device_check: dict[str, Any], ctx: AuditContext, now: dt.datetime, windows: Windows,
                   consent_policy: GatePolicy) -> Consultation | ScreeningRefusal:
    """The patient enters the waiting room after a short repeat screening and the device check, holding
    valid consents (the gate): nobody waits for a call that could not start."""
    consultation = await load(session, consultation_id, viewer, for_change=True)
    if viewer.role is not Role.patient:
        raise NotFound()
    already_waiting = consultation.status is ConsultationStatus.waiting  # checking in again re-screens
    if not already_waiting and not rules.checkin_open(consultation.starts_at, now=now,
                                                      opens_before=windows.checkin_opens, grace=windows.no_show_grace):
        raise CheckinClosed()
    gate = await consent.check_gate(session, consultation, policy=consent_policy, now=now)
    if not gate.may_start:
        raise ConsentRequired([p for p in consent.gate_problems(gate) if p["required"]])
    questionnaire = await conditions.current_questionnaire(session, CHECKIN_QUESTIONNAIRE)
    clean, triggered = _screen(questionnaire, answers)
    if triggered:
        _move(consultation, ConsultationStatus.refused)
        consultation.checkin_answers, consultation.checkin_questionnaire_id = clean, questionnaire.id
        return await _record_stop(session, patient_id=consultation.patient_id,
                                  physician_id=consultation.physician_id, consultation_id=consultation.id,
                                  questionnaire=questionnaire, stage=ScreeningStage.checkin, triggered=triggered,
                                  answers=clean, ctx=ctx, now=now)
    if not already_waiting:
        _move(consultation, ConsultationStatus.waiting)
        consultation.checked_in_at = now
    consultation.checkin_answers, consultation.checkin_questionnaire_id = clean, questionnaire.id
    consultation.device_check = device_check
    await audit.record(session, ctx=ctx, action="consultation.checked_in", object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id, now=now)
    return consultation


async def _physician_step(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, ctx: AuditContext,
                          now: dt.datetime, target: ConsultationStatus, action: str) -> Consultation:
    """A step only the consultation's own physician takes; the state machine decides if it is legal now."""
    consultation = await load(session, consultation_id, viewer, for_change=True)
    if viewer.role is not Role.physician:
        raise NotFound()
    _move(consultation, target)
    await audit.record(session, ctx=ctx, action=action, object_type="consultation", object_id=consultation.id,
                       subject_patient_id=consultation.patient_id, now=now)
    return consultation


async def admit(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, ctx: AuditContext,
                now: dt.datetime, consent_policy: GatePolicy) -> Consultation:
    """The physician lets a waiting patient in: what later allows the call to start. The consents are asked
    again: the patient may have withdrawn one while waiting."""
    consultation = await _physician_step(session, consultation_id=consultation_id, viewer=viewer, ctx=ctx, now=now,
                                         target=ConsultationStatus.in_call, action="consultation.admitted")
    gate = await consent.check_gate(session, consultation, policy=consent_policy, now=now)
    if not gate.may_start:
        raise ConsentRequired([p for p in consent.gate_problems(gate) if p["required"]])
    consultation.admitted_at = now
    return consultation


async def finish(session: AsyncSession, *, consultation_id: uuid.UUID, viewer: Viewer, ctx: AuditContext,
                 now: dt.datetime) -> Consultation:
    """The physician ends the consultation (the call issue will also end it when the call ends)."""
    consultation = await _physician_step(session, consultation_id=consultation_id, viewer=viewer, ctx=ctx, now=now,
                                         target=ConsultationStatus.completed, action="consultation.completed")
    consultation.ended_at = now
    return consultation


# The live call moves a consultation between these two by itself: source -> (target, audit action).
_CALL_MOVES = {
    ConsultationStatus.interrupted: (ConsultationStatus.in_call, "consultation.call_resumed"),
    ConsultationStatus.in_call: (ConsultationStatus.interrupted, "consultation.interrupted"),
}


async def set_call_state(session: AsyncSession, *, consultation_id: uuid.UUID, target: ConsultationStatus,
                         now: dt.datetime) -> Consultation | None:
    """The call resumes an `interrupted` consultation (both participants are back: `in_call`) or interrupts an
    `in_call` one (everyone dropped and nobody returned in time). The system acts, so there is no viewer.
    None when the move does not apply (already there, or the consultation has moved on, e.g. completed)."""
    if target not in (ConsultationStatus.in_call, ConsultationStatus.interrupted):
        raise ValueError(f"the call does not move a consultation to {target.value}")
    consultation = (await session.scalars(select(Consultation).where(Consultation.id == consultation_id)
                                          .with_for_update().execution_options(populate_existing=True))).one_or_none()
    if consultation is None or _CALL_MOVES.get(consultation.status, (None, ""))[0] is not target:
        return None
    action = _CALL_MOVES[consultation.status][1]
    _move(consultation, target)
    await audit.record(session, ctx=AuditContext(actor_role="system"), action=action, object_type="consultation",
                       object_id=consultation.id, subject_patient_id=consultation.patient_id, now=now)
    return consultation


async def mark_no_shows(session: AsyncSession, *, now: dt.datetime, windows: Windows) -> list[uuid.UUID]:
    """Scheduled consultations nobody checked in to by the end of the grace period become no-shows."""
    due = (await session.scalars(select(Consultation).where(
        Consultation.status.in_([ConsultationStatus.scheduled, ConsultationStatus.waiting]),
        Consultation.starts_at < now - windows.no_show_grace).with_for_update(skip_locked=True))).all()
    marked = []
    for consultation in due:
        # Nobody came by the end of the grace; or someone waited but was never let in before the slot ended.
        abandoned = (consultation.status is ConsultationStatus.waiting
                     and now > consultation.ends_at + windows.no_show_grace)
        if abandoned or rules.is_no_show(consultation.status, consultation.starts_at, now=now,
                                         grace=windows.no_show_grace):
            _move(consultation, ConsultationStatus.no_show)
            marked.append(consultation.id)
            await audit.record(session, ctx=AuditContext(actor_role="system"), action="consultation.no_show",
                               object_type="consultation", object_id=consultation.id,
                               subject_patient_id=consultation.patient_id, now=now)
    return marked
