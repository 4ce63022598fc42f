"""The conditions catalogue and screening questionnaires: seeded, read, and edited as new versions."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import services as audit
from server.audit.services import AuditContext
from server.scheduling.models import (
    ConditionVersion,
    Consultation,
    ConsultationKind,
    ConsultationStatus,
    DiagnosisSource,
    PatientDiagnosis,
    Questionnaire,
)
from server.scheduling.problems import UnknownCondition
from server.scheduling.screening import ConditionEntry, QuestionnaireDefinition


def _digest(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


async def seed_catalogue(session: AsyncSession, *, conditions: list[ConditionEntry],
                         questionnaires: dict[str, QuestionnaireDefinition], now: dt.datetime) -> int:
    """Add the default entries the database lacks (by code); existing entries, edited or not, are kept."""
    known_q = set((await session.scalars(select(Questionnaire.code))).all())
    for code, definition in questionnaires.items():
        if code not in known_q:
            body = definition.model_dump(mode="json")
            session.add(Questionnaire(code=code, version=definition.version, definition=body,
                                      sha256=_digest(body), created_at=now))
    known_c = set((await session.scalars(select(ConditionVersion.code))).all())
    added = 0
    for entry in conditions:
        if entry.code not in known_c:
            session.add(_version_from(entry, version=1, now=now, by=None))
            added += 1
    await session.flush()
    return added


def _version_from(entry: ConditionEntry, *, version: int, now: dt.datetime, by: uuid.UUID | None,
                  active: bool = True) -> ConditionVersion:
    return ConditionVersion(code=entry.code, version=version, is_current=True, active=active, icd10=entry.icd10,
                            name_ru=entry.name.ru, name_en=entry.name.en, audience=entry.audience,
                            allows_primary=entry.allows_primary, allows_repeat=entry.allows_repeat,
                            questionnaire_code=entry.questionnaire, created_at=now, created_by_user_id=by)


async def current_conditions(session: AsyncSession, *, include_inactive: bool = False) -> list[ConditionVersion]:
    query = select(ConditionVersion).where(ConditionVersion.is_current.is_(True)).order_by(ConditionVersion.code)
    if not include_inactive:
        query = query.where(ConditionVersion.active.is_(True))
    return list((await session.scalars(query)).all())


async def current_condition(session: AsyncSession, code: str) -> ConditionVersion:
    found = (await session.scalars(select(ConditionVersion).where(
        ConditionVersion.code == code, ConditionVersion.is_current.is_(True),
        ConditionVersion.active.is_(True)))).one_or_none()
    if found is None:
        raise UnknownCondition(field="condition_code")
    return found


async def save_condition(session: AsyncSession, *, entry: ConditionEntry, active: bool, ctx: AuditContext,
                         now: dt.datetime) -> ConditionVersion:
    """Add an entry, or a new version of it; earlier versions stay for the consultations that used them."""
    await current_questionnaire(session, entry.questionnaire)  # must exist
    latest = await session.scalar(select(func.max(ConditionVersion.version)).where(
        ConditionVersion.code == entry.code))
    if latest is not None:
        for old in (await session.scalars(select(ConditionVersion).where(
                ConditionVersion.code == entry.code, ConditionVersion.is_current.is_(True)))).all():
            old.is_current = False
    version = _version_from(entry, version=(latest or 0) + 1, now=now, by=ctx.actor_user_id, active=active)
    session.add(version)
    await session.flush()
    await audit.record(session, ctx=ctx, action="catalogue.condition_saved", object_type="condition",
                       object_id=version.id, detail={"code": entry.code, "version": version.version}, now=now)
    return version


async def current_questionnaire(session: AsyncSession, code: str) -> Questionnaire:
    found = (await session.scalars(select(Questionnaire).where(
        Questionnaire.code == code, Questionnaire.is_current.is_(True)))).one_or_none()
    if found is None:
        raise UnknownCondition(f"No screening questionnaire {code!r} is published", code="unknown_questionnaire")
    return found


async def publish_questionnaire(session: AsyncSession, *, definition: QuestionnaireDefinition, ctx: AuditContext,
                                now: dt.datetime) -> Questionnaire:
    """A new version (numbered after the latest); the previous stops being offered, never deleted."""
    latest = await session.scalar(select(func.max(Questionnaire.version)).where(
        Questionnaire.code == definition.code))
    for old in (await session.scalars(select(Questionnaire).where(
            Questionnaire.code == definition.code, Questionnaire.is_current.is_(True)))).all():
        old.is_current = False
    body = definition.model_copy(update={"version": (latest or 0) + 1}).model_dump(mode="json")
    published = Questionnaire(code=definition.code, version=body["version"], definition=body, sha256=_digest(body),
                              created_at=now)
    session.add(published)
    await session.flush()
    await audit.record(session, ctx=ctx, action="catalogue.questionnaire_published", object_type="questionnaire",
                       object_id=published.id, detail={"code": definition.code, "version": published.version},
                       now=now)
    return published


async def record_diagnosis(session: AsyncSession, *, patient_id: uuid.UUID, condition_code: str,
                           diagnosed_on: dt.date, ctx: AuditContext, now: dt.datetime) -> PatientDiagnosis:
    """An in-person diagnosis at this clinic, which makes repeat teleconsultations for it possible."""
    await current_condition(session, condition_code)
    if ctx.actor_user_id is None:
        raise ValueError("a diagnosis is recorded by someone")
    diagnosis = PatientDiagnosis(patient_id=patient_id, condition_code=condition_code, diagnosed_on=diagnosed_on,
                                 source=DiagnosisSource.in_person, recorded_by_user_id=ctx.actor_user_id,
                                 recorded_at=now)
    session.add(diagnosis)
    await session.flush()
    await audit.record(session, ctx=ctx, action="record.diagnosis_added", object_type="patient_diagnosis",
                       object_id=diagnosis.id, subject_patient_id=patient_id, now=now)
    return diagnosis


async def has_prior_diagnosis(session: AsyncSession, *, patient_id: uuid.UUID, condition_code: str) -> bool:
    """Diagnosed in person here, or followed up for it in an earlier *repeat* consultation (which itself
    required such a diagnosis): a primary teleconsultation may not establish a diagnosis (PRACTICE.md)."""
    recorded = await session.scalar(select(func.count()).select_from(PatientDiagnosis).where(
        PatientDiagnosis.patient_id == patient_id, PatientDiagnosis.condition_code == condition_code))
    if recorded:
        return True
    seen = await session.scalar(
        select(func.count()).select_from(Consultation)
        .join(ConditionVersion, ConditionVersion.id == Consultation.condition_id)
        .where(Consultation.patient_id == patient_id, ConditionVersion.code == condition_code,
               Consultation.kind == ConsultationKind.repeat,
               Consultation.status.in_([ConsultationStatus.completed, ConsultationStatus.documented])))
    return bool(seen)
