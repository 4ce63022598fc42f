"""Pure decisions about a protocol: what a kind of consultation may carry, what signing needs, when a
consultation may be written up and signed. No I/O, no clock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from consent.rules import canonical_json, sha256_hex
from server.records.content import ProtocolContent, stored
from server.scheduling.models import ConsultationKind, ConsultationStatus

# Rule names, used as problem codes and audit details: the QA module samples on them.
NO_DIAGNOSIS = "primary_consultation_no_diagnosis"
NO_PRESCRIPTION = "primary_consultation_no_prescription"

# WHO ICD-10: a letter, two digits, and optionally a dot with a subcategory (national extensions use up to
# four characters, e.g. ICD-10-CM's S72.001A).
_ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?")

# Drafting starts while the call runs (notes during the call) and stays open for amendments afterwards.
DRAFTABLE = frozenset({ConsultationStatus.in_call, ConsultationStatus.interrupted, ConsultationStatus.completed,
                       ConsultationStatus.documented})
# The first signature only after the consultation ended; later ones are amendments of a documented one.
SIGNABLE = frozenset({ConsultationStatus.completed, ConsultationStatus.documented})


@dataclass(frozen=True)
class FieldProblem:
    field: str
    type: str
    message: str


def forbidden_fields(kind: ConsultationKind, content: ProtocolContent) -> list[FieldProblem]:
    """A primary consultation may not establish a diagnosis or prescribe (the clinic's telemedicine rules):
    the fields are refused, not ignored, so nobody believes a prescription was recorded."""
    if kind is not ConsultationKind.primary:
        return []
    found = []
    if content.diagnosis is not None:
        found.append(FieldProblem("diagnosis", NO_DIAGNOSIS,
                                  "A primary consultation cannot establish a diagnosis; recommend an in-person visit"))
    if content.prescriptions:
        found.append(FieldProblem("prescriptions", NO_PRESCRIPTION,
                                  "A primary consultation cannot prescribe; recommend an in-person visit"))
    return found


def normalise_icd10(code: str) -> str:
    """`j06,9 ` and `J06.9` are the same code: upper case, a comma typed for the dot, no spaces."""
    return code.strip().upper().replace(",", ".").replace(" ", "")


def is_icd10(code: str) -> bool:
    return _ICD10.fullmatch(code) is not None


def signing_problems(kind: ConsultationKind, content: ProtocolContent) -> list[FieldProblem]:
    """What must be filled in before the protocol can be signed; empty when it can be."""
    problems = forbidden_fields(kind, content)
    for name in ("complaints", "assessment"):
        if not getattr(content, name):
            problems.append(FieldProblem(name, "missing", "Required before signing"))
    if kind is ConsultationKind.repeat:
        diagnosis = content.diagnosis
        if diagnosis is None or not diagnosis.icd10:
            problems.append(FieldProblem("diagnosis.icd10", "missing",
                                         "A repeat consultation records the diagnosis it follows up"))
        elif not is_icd10(normalise_icd10(diagnosis.icd10)):
            problems.append(FieldProblem("diagnosis.icd10", "icd10_format",
                                         "Not an ICD-10 code; write it like J06.9 or I10"))
        if diagnosis is not None and not diagnosis.text:
            problems.append(FieldProblem("diagnosis.text", "missing", "Name the diagnosis"))
        for index, item in enumerate(content.prescriptions):
            for name in ("drug", "dose", "frequency"):
                if not getattr(item, name):
                    problems.append(FieldProblem(f"prescriptions.{index}.{name}", "missing",
                                                 "Required for each prescription"))
    return problems


def normalised(content: ProtocolContent) -> ProtocolContent:
    """The content as it is signed: ICD-10 codes in their one written form."""
    if content.diagnosis is None:
        return content
    diagnosis = content.diagnosis.model_copy(update={"icd10": normalise_icd10(content.diagnosis.icd10)})
    return content.model_copy(update={"diagnosis": diagnosis})


def content_sha256(content: ProtocolContent) -> str:
    return sha256_hex(canonical_json(stored(content)))


def may_draft(status: ConsultationStatus) -> bool:
    return status in DRAFTABLE


def may_sign(status: ConsultationStatus) -> bool:
    return status in SIGNABLE


def draft_matches(current_revision: int, precondition: int | None) -> bool:
    """Optimistic concurrency: a save names the revision it edited; with no draft yet, none is needed."""
    return precondition is None or precondition == current_revision


SEALED_FIELDS = ("protocol_id", "consultation_id", "patient_id", "physician_id", "version", "document_id",
                 "pdf_sha256", "pdf_size", "content_sha256", "level", "evidence_sha256", "signed_at")


def changed_fields(stored_fields: dict[str, Any], sealed: dict[str, Any]) -> list[str]:
    """Which sealed fields no longer hold the value that was sealed."""
    return [name for name in SEALED_FIELDS if stored_fields.get(name) != sealed.get(name)]
