"""What a protocol says, as one validated shape shared by the API, the rules, the PDF and the stored JSON.

Every text field may be empty in a draft (autosave keeps half-written work); what signing needs is decided
by `rules.signing_problems`, not here, so a draft is never lost to a validation error.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from server.http.parsing import RequestModel

TEXT_MAX = 4000


class Prescription(RequestModel):
    drug: str = Field("", max_length=200)
    dose: str = Field("", max_length=100)
    route: str = Field("", max_length=100, description="e.g. oral, inhaled, topical")
    frequency: str = Field("", max_length=100)
    duration: str = Field("", max_length=100)
    notes: str = Field("", max_length=1000)


class Diagnosis(RequestModel):
    icd10: str = Field("", max_length=16, description="ICD-10 code such as `J06.9`; checked when signing")
    text: str = Field("", max_length=500)


class Recommendations(RequestModel):
    in_person_visit: bool = Field(False, description="The patient is advised to come to the clinic in person")
    tests: bool = Field(False, description="Tests are recommended (which ones in `tests_detail`)")
    tests_detail: str = Field("", max_length=TEXT_MAX)
    text: str = Field("", max_length=TEXT_MAX)


class ProtocolContent(RequestModel):
    """The protocol's fields. `diagnosis` and `prescriptions` belong to repeat consultations only."""

    complaints: str = Field("", max_length=TEXT_MAX)
    anamnesis: str = Field("", max_length=TEXT_MAX, description="History of the present complaint")
    reported_and_shown: str = Field("", max_length=TEXT_MAX,
                                    description="What the patient reported and showed (readings, rash, documents)")
    assessment: str = Field("", max_length=TEXT_MAX)
    recommendations: Recommendations = Field(default_factory=Recommendations)
    follow_up: str = Field("", max_length=TEXT_MAX)
    diagnosis: Diagnosis | None = None
    prescriptions: list[Prescription] = Field(default_factory=list, max_length=30)


CONTENT_FIELDS = frozenset(ProtocolContent.model_fields)


def stored(content: ProtocolContent) -> dict[str, Any]:
    """The JSON kept in the database and hashed: every field, defaults included, so equal means same."""
    return content.model_dump(mode="json")


def loaded(data: dict[str, Any] | None) -> ProtocolContent:
    """Stored JSON back into the shape (an empty draft when there is none)."""
    return ProtocolContent.model_validate(data or {})
