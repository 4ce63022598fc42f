"""Request and response models for accounts and profiles (the OpenAPI spec is generated from these)."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from server.http.parsing import RequestModel
from server.people import rules

E164 = r"^\+[1-9]\d{7,14}$"
Locale = Literal["ru", "en"]


def _lower(value: str) -> str:
    return value.lower()


class RegisterIn(RequestModel):
    email: EmailStr
    password: str = Field(min_length=10, max_length=256)
    full_name: str = Field(min_length=1, max_length=200)
    birth_date: dt.date
    phone: str = Field(pattern=E164, description="E.164, e.g. +79161234567")
    locale: Locale = "ru"
    snils: str | None = Field(default=None, max_length=14, description="СНИЛС (11 digits, separators allowed); "
                              "matches a qualified e-signature certificate to the patient")

    _email = field_validator("email")(_lower)

    @field_validator("snils")
    @classmethod
    def _snils(cls, value: str | None) -> str | None:
        if value is None or not value:
            return None
        digits = "".join(c for c in value if c not in " -")
        if not rules.snils_valid(digits):
            raise ValueError("not a valid СНИЛС (11 digits with a correct check number)")
        return digits

    @field_validator("birth_date")
    @classmethod
    def _plausible_birth_date(cls, value: dt.date) -> dt.date:
        if not dt.date(1900, 1, 1) <= value <= dt.datetime.now(dt.UTC).date():
            raise ValueError("birth date must be between 1900-01-01 and today")
        return value


class StaffCreateIn(RequestModel):
    role: Literal["physician", "qa_expert", "admin"]
    email: EmailStr
    password: str = Field(min_length=12, max_length=256)
    full_name: str = Field(min_length=1, max_length=200)
    locale: Locale = "ru"
    specialty: str | None = Field(default=None, min_length=1, max_length=100)
    licence_number: str | None = Field(default=None, min_length=1, max_length=50)
    time_zone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Moscow")
    department: str | None = Field(default=None, min_length=1, max_length=100,
                                   description="Physicians and QA experts: QA can keep reviews out of it")
    practises_as: uuid.UUID | None = Field(default=None, description="QA experts who also see patients: their "
                                           "physician id, so they are never given their own consultations")

    _email = field_validator("email")(_lower)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError("unknown time zone") from None
        return value

    @model_validator(mode="after")
    def _physician_fields(self) -> StaffCreateIn:
        if self.role == "physician":
            missing = [name for name in ("specialty", "licence_number", "time_zone") if getattr(self, name) is None]
            if missing:
                raise ValueError("a physician needs " + ", ".join(missing))
        if self.practises_as is not None and self.role != "qa_expert":
            raise ValueError("practises_as is for QA experts")
        return self


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(Out):
    id: uuid.UUID
    email: str
    role: str
    full_name: str
    locale: str
    mfa_enabled: bool
    created_at: dt.datetime


class PatientOut(Out):
    id: uuid.UUID
    full_name: str
    email: str
    birth_date: dt.date
    phone: str


class PhysicianOut(Out):
    id: uuid.UUID
    full_name: str
    specialty: str
    licence_number: str
    time_zone: str
    department: str | None = None


class QaExpertOut(Out):
    id: uuid.UUID
    full_name: str
    specialty: str | None
    department: str | None = None
    practises_as: uuid.UUID | None = None


class MeOut(Out):
    user: UserOut
    patient: PatientOut | None = None
    physician: PhysicianOut | None = None
    qa_expert: QaExpertOut | None = None


class NotificationChoiceIn(RequestModel):
    email: bool
    sms: bool


class NotificationChoiceOut(Out):
    email: bool
    sms: bool


class UserList(Out):
    items: list[UserOut]


class PhysicianList(Out):
    items: list[PhysicianOut]


class UserListQuery(RequestModel):
    role: Literal["patient", "physician", "qa_expert", "admin"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=1_000_000)
