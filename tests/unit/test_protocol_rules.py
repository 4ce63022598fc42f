"""The protocol's pure rules: what a primary consultation may carry, ICD-10 codes, what signing needs, when a
consultation may be written up and signed; and the PDF's determinism."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from server.records import rules
from server.records.content import Diagnosis, Prescription, ProtocolContent, loaded, stored
from server.records.pdf import ProtocolDocumentInput, render_protocol_pdf
from server.scheduling.models import ConsultationKind, ConsultationStatus

PRIMARY, REPEAT = ConsultationKind.primary, ConsultationKind.repeat
FILLED = ProtocolContent(complaints="Кашель", assessment="ОРВИ")
DIAGNOSIS = Diagnosis(icd10="J06.9", text="ОРВИ")
MOSCOW = ZoneInfo("Europe/Moscow")
PILL = Prescription(drug="Парацетамол", dose="500 мг", frequency="до 3 раз в день")


def _with(**fields: object) -> ProtocolContent:
    return FILLED.model_copy(update=fields)


def test_forbidden_fields_primary_refuses_diagnosis_and_prescriptions_by_rule() -> None:
    found = rules.forbidden_fields(PRIMARY, _with(diagnosis=DIAGNOSIS, prescriptions=[PILL]))
    assert [(p.field, p.type) for p in found] == [("diagnosis", rules.NO_DIAGNOSIS),
                                                  ("prescriptions", rules.NO_PRESCRIPTION)]


def test_forbidden_fields_primary_allows_recommendations_and_empty_lists() -> None:
    assert rules.forbidden_fields(PRIMARY, _with(prescriptions=[])) == []


def test_forbidden_fields_repeat_allows_everything() -> None:
    assert rules.forbidden_fields(REPEAT, _with(diagnosis=DIAGNOSIS, prescriptions=[PILL])) == []


@pytest.mark.parametrize("code", ["J06.9", "I10", "E11.65", "S72.001A", "U07.1"])
def test_is_icd10_accepts_codes(code: str) -> None:
    assert rules.is_icd10(code)


@pytest.mark.parametrize("code", ["", "J6.9", "06.9", "J06.", "J06-9", "ОРВИ", "J06.99999"])
def test_is_icd10_refuses_other_text(code: str) -> None:
    assert not rules.is_icd10(code)


def test_normalise_icd10_reads_what_physicians_type() -> None:
    assert rules.normalise_icd10(" j06,9 ") == "J06.9"


def test_signing_problems_name_the_missing_fields() -> None:
    assert [p.field for p in rules.signing_problems(PRIMARY, ProtocolContent())] == ["complaints", "assessment"]
    assert rules.signing_problems(PRIMARY, FILLED) == []


def test_signing_problems_repeat_needs_a_valid_diagnosis_and_complete_prescriptions() -> None:
    assert [p.field for p in rules.signing_problems(REPEAT, FILLED)] == ["diagnosis.icd10"]
    wrong = _with(diagnosis=Diagnosis(icd10="ОРВИ", text="ОРВИ"), prescriptions=[Prescription(drug="Парацетамол")])
    assert [(p.field, p.type) for p in rules.signing_problems(REPEAT, wrong)] == [
        ("diagnosis.icd10", "icd10_format"), ("prescriptions.0.dose", "missing"),
        ("prescriptions.0.frequency", "missing")]
    assert rules.signing_problems(REPEAT, _with(diagnosis=DIAGNOSIS, prescriptions=[PILL])) == []


def test_signing_problems_primary_reports_forbidden_fields_too() -> None:
    assert [p.type for p in rules.signing_problems(PRIMARY, _with(diagnosis=DIAGNOSIS))] == [rules.NO_DIAGNOSIS]


def test_normalised_writes_the_code_in_one_form() -> None:
    content = rules.normalised(_with(diagnosis=Diagnosis(icd10="i10 ", text="ГБ")))
    assert content.diagnosis == Diagnosis(icd10="I10", text="ГБ")
    assert rules.normalised(FILLED) == FILLED


def test_may_draft_and_sign_follow_the_consultation() -> None:
    assert rules.may_draft(ConsultationStatus.in_call)
    assert rules.may_draft(ConsultationStatus.interrupted)
    assert not rules.may_draft(ConsultationStatus.waiting)
    assert not rules.may_sign(ConsultationStatus.in_call)
    assert rules.may_sign(ConsultationStatus.completed)
    assert rules.may_sign(ConsultationStatus.documented)


def test_draft_matches_only_the_current_revision() -> None:
    assert rules.draft_matches(3, 3)
    assert rules.draft_matches(3, None)
    assert not rules.draft_matches(3, 2)


def test_changed_fields_names_what_differs_from_the_seal() -> None:
    sealed = {name: "x" for name in rules.SEALED_FIELDS}
    assert rules.changed_fields({**sealed, "pdf_sha256": "y"}, sealed) == ["pdf_sha256"]


@given(st.text(max_size=200), st.text(max_size=200))
def test_content_and_its_hash_survive_storage(complaints: str, assessment: str) -> None:
    try:
        content = ProtocolContent(complaints=complaints, assessment=assessment)
    except ValidationError:
        return  # control characters are refused before anything is stored
    assert loaded(stored(content)) == content
    assert rules.content_sha256(loaded(stored(content))) == rules.content_sha256(content)


def test_render_protocol_pdf_is_deterministic_and_per_language() -> None:
    starts_at = dt.datetime(2026, 11, 22, 10, tzinfo=MOSCOW)
    data = ProtocolDocumentInput(
        document_id=uuid.UUID(int=1), clinic_name="Клиника", language="ru", version=1, amendment_reason=None,
        kind="repeat", starts_at=starts_at, condition="ОРВИ", patient_name="Иванов Иван",
        birth_date=dt.date(1950, 1, 1), physician_name="Петров Пётр", physician_specialty="терапевт",
        physician_licence="77-01", content=_with(diagnosis=DIAGNOSIS, prescriptions=[PILL]))
    first = render_protocol_pdf(data)
    assert first == render_protocol_pdf(data)
    assert first.startswith(b"%PDF-")
    assert render_protocol_pdf(dataclasses.replace(data, language="en")) != first
    with pytest.raises(ValueError, match="language"):
        render_protocol_pdf(dataclasses.replace(data, language="de"))
