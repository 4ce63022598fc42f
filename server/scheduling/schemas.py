"""Request and response models for schedules, slots, the catalogue and consultations."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from server.http.parsing import RequestModel

AnswerValue = bool | float | str

# Dates a clinic's scheduling can mean: far enough for any booking or report, near enough that date
# arithmetic never overflows (a year 9999 request is a mistake or a probe, answered 422).
EARLIEST, LATEST = dt.date(2000, 1, 1), dt.date(2100, 12, 31)


def _sane_date(value: dt.date | None) -> dt.date | None:
    if value is not None and not EARLIEST <= value <= LATEST:
        raise ValueError(f"must be between {EARLIEST} and {LATEST}")
    return value


def _sane_moment(value: dt.datetime) -> dt.datetime:
    # Checked before any conversion: converting 9999-12-31T23:59-14:00 to UTC would itself overflow.
    if not EARLIEST.year <= value.year <= LATEST.year:
        raise ValueError(f"must be between {EARLIEST} and {LATEST}")
    return value


SaneDate = Annotated[dt.date, AfterValidator(_sane_date)]
SaneMoment = Annotated[AwareDatetime, AfterValidator(_sane_moment)]


class ConditionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    code: str
    version: int
    active: bool
    icd10: str | None
    name_ru: str
    name_en: str
    audience: str
    allows_primary: bool
    allows_repeat: bool
    questionnaire_code: str


class ConditionList(BaseModel):
    items: list[ConditionOut]


class QuestionnaireOut(BaseModel):
    code: str
    version: int
    definition: dict[str, Any]


class SlotsQuery(RequestModel):
    physician_id: uuid.UUID | None = None
    specialty: str | None = Field(default=None, max_length=100)
    date_from: SaneDate | None = None
    date_to: SaneDate | None = None
    limit: int = Field(default=100, ge=1, le=500)


class SlotOut(BaseModel):
    physician_id: uuid.UUID
    physician_name: str
    specialty: str
    time_zone: str
    starts_at: dt.datetime
    ends_at: dt.datetime


class SlotList(BaseModel):
    items: list[SlotOut]


class BookingIn(RequestModel):
    physician_id: uuid.UUID
    starts_at: SaneMoment
    condition_code: str = Field(min_length=1, max_length=64)
    kind: Literal["primary", "repeat"]
    answers: dict[str, AnswerValue] = Field(description="Screening answers by question id")
    complaint: str = Field(default="", max_length=5000, description="In the patient's words; the clinic sets a limit")
    patient_id: uuid.UUID | None = Field(default=None, description="Staff booking on a patient's behalf")


class RescheduleIn(RequestModel):
    starts_at: SaneMoment


class DeviceCheckIn(RequestModel):
    camera: bool
    microphone: bool
    speaker: bool
    browser: str = Field(default="", max_length=200)
    # Codes from our device check, or a few words from another client; never control characters.
    problems: list[Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]] = Field(
        default_factory=list, max_length=10)


class CheckInIn(RequestModel):
    answers: dict[str, AnswerValue]
    device_check: DeviceCheckIn


class ConsultationOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    physician_id: uuid.UUID
    physician_name: str
    condition_code: str
    condition_name_ru: str
    condition_name_en: str
    kind: str
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    needs_reschedule: bool
    checked_in_at: dt.datetime | None
    admitted_at: dt.datetime | None
    ended_at: dt.datetime | None
    cancelled_at: dt.datetime | None


class ConsultationDetailOut(ConsultationOut):
    complaint: str
    screening_questionnaire: str
    screening_answers: dict[str, Any]
    checkin_answers: dict[str, Any] | None
    device_check: dict[str, Any] | None


class ConsultationList(BaseModel):
    items: list[ConsultationOut]


class ConsultationsQuery(RequestModel):
    scope: Literal["upcoming", "past", "cancelled", "all"] = "all"
    date_from: SaneDate | None = None
    date_to: SaneDate | None = None
    limit: int = Field(default=100, ge=1, le=500)


class HoursIn(RequestModel):
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    start: dt.time
    end: dt.time
    slot_minutes: int = Field(default=20, ge=5, le=120)

    @model_validator(mode="after")
    def _ordered(self) -> HoursIn:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class WeeklyHoursIn(RequestModel):
    ranges: list[HoursIn] = Field(max_length=70)


class ExceptionIn(RequestModel):
    day: SaneDate
    kind: Literal["day_off", "extra_hours"]
    start: dt.time | None = None
    end: dt.time | None = None
    slot_minutes: int = Field(default=20, ge=5, le=120)

    @model_validator(mode="after")
    def _range(self) -> ExceptionIn:
        if self.kind == "extra_hours" and not (self.start and self.end and self.start < self.end):
            raise ValueError("extra hours need a start before their end")
        return self


class HoursOut(BaseModel):
    weekday: int
    start: dt.time
    end: dt.time
    slot_minutes: int


class ExceptionOut(BaseModel):
    id: uuid.UUID
    day: dt.date
    kind: str
    start: dt.time | None
    end: dt.time | None
    slot_minutes: int


class AvailabilityOut(BaseModel):
    physician_id: uuid.UUID
    time_zone: str
    weekly: list[HoursOut]
    exceptions: list[ExceptionOut]
    affected: list[ConsultationOut] = Field(
        default_factory=list, description="Bookings the hours no longer cover: reschedule them")


class DiagnosisIn(RequestModel):
    condition_code: str = Field(min_length=1, max_length=64)
    diagnosed_on: SaneDate


class DiagnosisOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    condition_code: str
    diagnosed_on: dt.date


class ConsentGateOut(BaseModel):
    """The patient's consents as the gate sees them now (a withdrawal after check-in shows here)."""

    may_start: bool
    may_record: bool
    problems: list[dict[str, str | bool]] = Field(description="Each purpose not held: {purpose, problem, required}")


class QueueItem(BaseModel):
    consultation_id: uuid.UUID
    patient_name: str
    kind: str
    condition_name_ru: str
    condition_name_en: str
    starts_at: dt.datetime
    checked_in_at: dt.datetime | None
    device_check: dict[str, Any] | None
    consent: ConsentGateOut


class QueueOut(BaseModel):
    items: list[QueueItem]


class StatsQuery(RequestModel):
    day: SaneDate


class StatsOut(BaseModel):
    physician_id: uuid.UUID
    day: dt.date
    booked: int
    completed: int
    cancelled: int
    no_show: int
    no_show_rate: float | None = Field(description="No-shows among consultations that were due; null when none")
    mean_wait_seconds: float | None = Field(description="Mean time from check-in to admission")
