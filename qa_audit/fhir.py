"""A done QA review as a FHIR R4 `QuestionnaireResponse` (the R4B model is R4's), and who may read one.

The review is about the physician's work, not the patient's health: its `subject` is the consultation's Encounter,
its `author` the expert, its questionnaire the checklist template's code and version. Each checklist item is an
item whose answer is coded yes / no / na, with the expert's comment and the moment in the recording nested under
the answer; the weighted score and the count of critical failures close the list.

Reviews are the clinic's internal quality records: an admin reads any, a QA expert those assigned to them, a
physician the done reviews of their own consultations, a patient none (`may_read`). The FHIR API's loader glue
lives in `server/records/fhir_api.py`; resource ids are `qa-<review id>`, which never parse as a screening's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit.models import ChecklistTemplate, Review
from qa_audit.report_queries import DONE_STATUSES
from server.auth.models import Role, User
from server.people.models import Physician, QaExpert
from server.scheduling.models import Consultation

ID_PREFIX = "qa-"
ANSWER_DISPLAY = {"yes": "Yes", "no": "No", "na": "Not applicable"}


def resource_id(review_id: uuid.UUID) -> str:
    return f"{ID_PREFIX}{review_id}"


def parse_resource_id(value: str) -> uuid.UUID | None:
    """The review's id from `qa-<uuid>`; None for anything else (a screening's id, a typo)."""
    if not value.startswith(ID_PREFIX):
        return None
    try:
        return uuid.UUID(value.removeprefix(ID_PREFIX))
    except ValueError:
        return None


@dataclass(frozen=True)
class ReviewExport:
    """A review with what its resource names: the checklist it was filled against, its expert, whose data."""

    review: Review
    template: ChecklistTemplate
    expert: QaExpert
    expert_name: str
    patient_id: uuid.UUID  # whose consultation: the audit entry of a read names them

    @property
    def done(self) -> bool:
        return self.review.status in DONE_STATUSES


async def load(session: AsyncSession, review_id: uuid.UUID) -> ReviewExport | None:
    row = (await session.execute(
        select(Review, ChecklistTemplate, QaExpert, User.full_name, Consultation.patient_id)
        .join(ChecklistTemplate, ChecklistTemplate.id == Review.template_id)
        .join(QaExpert, QaExpert.id == Review.expert_id).join(User, User.id == QaExpert.user_id)
        .join(Consultation, Consultation.id == Review.consultation_id)
        .where(Review.id == review_id))).one_or_none()
    return None if row is None else ReviewExport(*row)


async def may_read(session: AsyncSession, export: ReviewExport, *, user_id: uuid.UUID, role: Role) -> bool:
    """Admins any review; an expert their own; a physician the done reviews of their consultations; no patient."""
    if role is Role.admin:
        return True
    if role is Role.qa_expert:
        return export.expert.user_id == user_id
    if role is Role.physician and export.done:
        return await session.scalar(select(Physician.user_id).where(
            Physician.id == export.review.physician_id)) == user_id
    return False


async def load_done(session: AsyncSession, value: str) -> ReviewExport | None:
    """The done review named by the resource id `value` (open reviews are work in progress: not exported)."""
    review_id = parse_resource_id(value)
    export = await load(session, review_id) if review_id else None
    return export if export is not None and export.done else None


Reader = Callable[[AsyncSession, uuid.UUID, Role], Awaitable[bool]]


def reader(export: ReviewExport) -> Reader:
    """`may_read` for this review, as the FHIR API's read asks it: (session, user id, role)."""
    async def check(session: AsyncSession, user_id: uuid.UUID, role: Role) -> bool:
        return await may_read(session, export, user_id=user_id, role=role)

    return check


async def find(session: AsyncSession, value: str, *, user_id: uuid.UUID, role: Role) -> ReviewExport | None:
    """The done review named by `value`, if this user may read it (else None: a 404)."""
    export = await load_done(session, value)
    if export is None or not await may_read(session, export, user_id=user_id, role=role):
        return None
    return export


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def _text(texts: Any, locale: str) -> str | None:
    if isinstance(texts, Mapping):
        found = texts.get(locale) or texts.get("en")
        return str(found) if found else None
    return None


def _item(item: Mapping[str, Any], entry: Any, *, base_url: str, locale: str) -> dict[str, Any] | None:
    """One checklist item with its answer; None when it was left unanswered."""
    if not isinstance(entry, Mapping) or entry.get("answer") not in ANSWER_DISPLAY:
        return None
    key = str(item["key"])
    answer: dict[str, Any] = {"valueCoding": {"system": f"{_base(base_url)}/fhir/CodeSystem/qa-answer",
                                              "code": entry["answer"], "display": ANSWER_DISPLAY[entry["answer"]]}}
    nested = []
    if isinstance(entry.get("comment"), str) and entry["comment"].strip():
        nested.append({"linkId": f"{key}.comment", "text": "Comment", "answer": [{"valueString": entry["comment"]}]})
    if isinstance(entry.get("at"), int | float) and not isinstance(entry.get("at"), bool):
        nested.append({"linkId": f"{key}.at", "text": "Moment in the recording, seconds",
                       "answer": [{"valueDecimal": entry["at"]}]})
    if nested:
        answer["item"] = nested
    found: dict[str, Any] = {"linkId": key, "answer": [answer]}
    if (text := _text(item.get("text"), locale)) is not None:
        found["text"] = text
    return found


def _author(export: ReviewExport, base_url: str) -> dict[str, Any]:
    """The expert: their Practitioner when they also practise here, else a Practitioner named by identifier."""
    if export.expert.physician_id is not None:
        return {"reference": f"Practitioner/{export.expert.physician_id}", "display": export.expert_name}
    return {"type": "Practitioner", "display": export.expert_name,
            "identifier": {"system": f"{_base(base_url)}/fhir/sid/qa-expert", "value": str(export.expert.id)}}


def questionnaire_response(export: ReviewExport, *, base_url: str, locale: str,
                           name_expert: bool = True) -> QuestionnaireResponse:
    """The done review as a QuestionnaireResponse: `completed`, or `amended` for a second review. Without
    `name_expert` (for the reviewed physician, as the pages and the API) the author is the clinic's quality
    service, not the expert."""
    review, template = export.review, export.template
    if review.status not in DONE_STATUSES:
        raise ValueError("only a done review is exported")
    items = [found for item in template.items
             if (found := _item(item, review.answers.get(item["key"]), base_url=base_url, locale=locale))]
    for index, note in enumerate(review.notes):
        if isinstance(note, Mapping) and isinstance(note.get("text"), str) and note["text"].strip():
            answer: dict[str, Any] = {"valueString": note["text"]}
            if isinstance(note.get("at"), int | float) and not isinstance(note.get("at"), bool):
                answer["item"] = [{"linkId": f"note.{index}.at", "text": "Moment in the recording, seconds",
                                   "answer": [{"valueDecimal": note["at"]}]}]
            items.append({"linkId": f"note.{index}", "text": "Note", "answer": [answer]})
    if review.summary.strip():
        items.append({"linkId": "summary", "text": "Summary", "answer": [{"valueString": review.summary}]})
    if review.score is not None:
        items.append({"linkId": "score", "text": "Weighted score, %",
                      "answer": [{"valueDecimal": round(review.score, 2)}]})
    if review.critical_failures is not None:
        items.append({"linkId": "critical_failures", "text": "Critical items failed",
                      "answer": [{"valueInteger": review.critical_failures}]})
    authored: dt.datetime = review.submitted_at or review.assigned_at
    data: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": resource_id(review.id),
        "identifier": {"use": "official", "system": f"{_base(base_url)}/fhir/sid/qa-review", "value": str(review.id)},
        "questionnaire": f"{_base(base_url)}/fhir/Questionnaire/qa-{template.code}|{template.version}",
        "status": "amended" if review.round > 1 else "completed",
        "subject": {"reference": f"Encounter/{review.consultation_id}"},
        "authored": authored.isoformat(),
        "author": _author(export, base_url) if name_expert else {"type": "Organization",
                                                                  "display": "Quality assurance"},
    }
    if items:
        data["item"] = items
    return QuestionnaireResponse.model_validate(data)

