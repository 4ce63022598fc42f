"""QA test data straight into the tables: completed consultations with their sampling decisions, checklist
templates and reviews in any state, for the report and export tests (the workflow's own tests go through it)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from qa_audit.models import ChecklistTemplate, Review, ReviewStatus, SamplingDecision
from qa_audit.rules import DEFAULT_CHECKLIST
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.people.models import Physician, QaExpert
from server.scheduling.catalogue import load_conditions, load_questionnaires
from server.scheduling.conditions import seed_catalogue
from server.scheduling.models import ConditionVersion, Consultation, ConsultationKind, ConsultationStatus, Questionnaire
from tests.factories import Account, create_staff, register_patient

_minutes = itertools.count(1)


@dataclass
class QaClinic:
    """A clinic with a patient, the seeded catalogue and the default checklist, ready for QA rows."""

    client: TestClient
    patient: Account
    condition_id: uuid.UUID
    questionnaire_id: uuid.UUID
    template_id: uuid.UUID
    physicians: dict[str, tuple[Account, uuid.UUID]] = field(default_factory=dict)
    experts: dict[str, tuple[Account, uuid.UUID]] = field(default_factory=dict)

    def physician_id(self, name: str) -> uuid.UUID:
        return self.physicians[name][1]

    def expert_id(self, name: str) -> uuid.UUID:
        return self.experts[name][1]


async def qa_clinic(client: TestClient) -> QaClinic:
    async with transaction(client.app[keys.sessions]) as session:
        await seed_catalogue(session, conditions=load_conditions(), questionnaires=load_questionnaires(), now=utcnow())
        condition_id = (await session.scalars(select(ConditionVersion.id).limit(1))).one()
        questionnaire_id = (await session.scalars(select(Questionnaire.id).limit(1))).one()
        template = ChecklistTemplate(code=DEFAULT_CHECKLIST["code"], version=DEFAULT_CHECKLIST["version"],
                                     title=DEFAULT_CHECKLIST["title"], items=DEFAULT_CHECKLIST["items"])
        session.add(template)
        await session.flush()
        template_id = template.id
    patient = await register_patient(client, full_name="Quality Patient")
    return QaClinic(client, patient, condition_id, questionnaire_id, template_id)


async def add_physician(clinic: QaClinic, name: str, *, department: str | None = None) -> uuid.UUID:
    account = await create_staff(clinic.client, Role.physician, full_name=name, signed_in=False)
    async with transaction(clinic.client.app[keys.sessions]) as session:
        physician_id = (await session.scalars(select(Physician.id).where(
            Physician.user_id == uuid.UUID(account.user_id)))).one()
        await session.execute(update(Physician).where(Physician.id == physician_id).values(department=department))
    clinic.physicians[name] = (account, physician_id)
    return physician_id


async def add_expert(clinic: QaClinic, name: str) -> uuid.UUID:
    account = await create_staff(clinic.client, Role.qa_expert, full_name=name, signed_in=False)
    async with clinic.client.app[keys.read_sessions]() as session:
        expert_id = (await session.scalars(select(QaExpert.id).where(
            QaExpert.user_id == uuid.UUID(account.user_id)))).one()
    clinic.experts[name] = (account, expert_id)
    return expert_id


async def add_consultations(clinic: QaClinic, physician: str, month: str, *, count: int, sampled: int,
                            status: ConsultationStatus = ConsultationStatus.completed,
                            decided: bool = True) -> list[uuid.UUID]:
    """`count` consultations of the physician in `month` (YYYY-MM), the first `sampled` of them sampled."""
    physician_id = clinic.physician_id(physician)
    first = dt.datetime(int(month[:4]), int(month[5:]), 3, 9, tzinfo=dt.UTC)
    ids = []
    async with transaction(clinic.client.app[keys.sessions]) as session:
        for index in range(count):
            starts = first + dt.timedelta(minutes=7 * (next(_minutes) % 3000))  # within the month, distinct
            consultation = Consultation(
                patient_id=uuid.UUID(clinic.patient.patient_id or ""), physician_id=physician_id,
                condition_id=clinic.condition_id, kind=ConsultationKind.primary, status=status, starts_at=starts,
                ends_at=starts + dt.timedelta(minutes=20), questionnaire_id=clinic.questionnaire_id,
                booked_by_user_id=uuid.UUID(clinic.patient.user_id))
            session.add(consultation)
            await session.flush()
            if decided:
                session.add(SamplingDecision(
                    consultation_id=consultation.id, physician_id=physician_id, month=month,
                    sampled=index < sampled, reasons=["random"] if index < sampled else [],
                    draw_value=f"{index:016x}", policy_version=1, secret_id="test"))
            ids.append(consultation.id)
    return ids


async def add_review(clinic: QaClinic, consultation_id: uuid.UUID, *, physician: str, expert: str,
                     status: ReviewStatus, round_: int = 1, score: float | None = None,
                     critical_failures: int | None = None, failed_items: list[str] | None = None,
                     due_on: dt.date = dt.date(2025, 1, 20), answers: dict[str, Any] | None = None) -> uuid.UUID:
    done = status not in (ReviewStatus.assigned, ReviewStatus.in_review)
    review = Review(consultation_id=consultation_id, physician_id=clinic.physician_id(physician),
                    expert_id=clinic.expert_id(expert), template_id=clinic.template_id, round=round_, status=status,
                    assigned_at=dt.datetime(2025, 1, 10, 9, tzinfo=dt.UTC), due_on=due_on,
                    answers=answers or {}, score=score, critical_failures=critical_failures,
                    failed_items=failed_items or [],
                    submitted_at=dt.datetime(2025, 1, 12, 9, tzinfo=dt.UTC) if done else None)
    async with transaction(clinic.client.app[keys.sessions]) as session:
        session.add(review)
    return review.id
