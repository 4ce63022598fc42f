"""A patient's consents as the pages show them: per purpose the clinic asks, what holds now and why not.

The decision is the gate's own (`consent.services.patient_gate`), so a page never says "signed" where check-in
would refuse; the rows add what a person needs to read it: the title, the consent that counts, the dates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import rules, services, templates
from consent.models import Consent, ConsentPurpose, ConsentTemplate
from server.auth.models import User
from server.people.models import Patient


@dataclass(frozen=True)
class PurposeRow:
    """One purpose the clinic asks for: its problem (None: a valid consent is held) and what explains it."""

    purpose: ConsentPurpose
    required: bool
    problem: rules.GateProblem | None
    template: ConsentTemplate | None  # the version signed now; None: nothing published for the purpose
    valid: Consent | None  # the consent that counts now
    latest: Consent | None  # the latest consent, whatever its state: its dates explain the problem

    @property
    def signable(self) -> bool:
        """The patient has something to sign here: a published text and no consent that counts."""
        return self.problem is not None and self.template is not None

    @property
    def shown(self) -> Consent | None:
        """The consent whose date and version the status sentence names."""
        return self.valid or self.latest


@dataclass(frozen=True)
class GateSummary:
    """The gate in one line, as staff read it in the queue and on the consultation."""

    may_start: bool
    missing: tuple[ConsentPurpose, ...]  # required purposes without a consent that counts
    unrecorded: bool  # may start, but without a recording: the patient has not agreed to one


def summarize(decision: rules.GateDecision, policy: rules.GatePolicy) -> GateSummary:
    return GateSummary(decision.may_start, tuple(s.purpose for s in decision.blocking),
                       decision.may_start and policy.recording_enabled and not decision.may_record)


@dataclass(frozen=True)
class Overview:
    decision: rules.GateDecision
    rows: list[PurposeRow]
    consents: list[Consent]  # every consent signed, newest first
    policy: rules.GatePolicy

    @property
    def needed(self) -> list[PurposeRow]:
        """What must be signed before a consultation may start."""
        return [row for row in self.rows if row.required and row.problem is not None]

    @property
    def optional(self) -> list[PurposeRow]:
        """What may be signed but need not be (recording, where the clinic allows unrecorded consultations)."""
        return [row for row in self.rows if not row.required and row.problem is not None]

    @property
    def summary(self) -> GateSummary:
        return summarize(self.decision, self.policy)


async def overview(session: AsyncSession, *, patient_id: uuid.UUID, policy: rules.GatePolicy,
                   now: dt.datetime) -> Overview:
    """The gate's decision for this patient with the rows and consents that explain it."""
    decision = await services.patient_gate(session, patient_id=patient_id, policy=policy, now=now)
    consents = await services.patient_consents(session, patient_id=patient_id)
    minimum = await templates.minimum_versions(session)
    current: dict[ConsentPurpose, ConsentTemplate] = {}
    for template in await templates.list_templates(session, published_only=True):  # newest version first
        current.setdefault(template.purpose, template)
    rows = []
    for status in decision.statuses:
        mine = [c for c in consents if c.purpose is status.purpose]
        valid = next((c for c in mine if status.purpose in minimum and rules.consent_problem(
            rules.ConsentFacts(c.purpose, c.template_version, c.level, c.signed_at, c.withdrawn_at),
            minimum_version=minimum[status.purpose], policy=policy, now=now) is None), None)
        rows.append(PurposeRow(status.purpose, status.required, status.problem, current.get(status.purpose), valid,
                               mine[0] if mine else None))
    return Overview(decision, rows, consents, policy)


async def patient_name_and_locale(session: AsyncSession, patient_id: uuid.UUID) -> tuple[str, str] | None:
    """Whose document staff are preparing, and the language their account reads."""
    row = (await session.execute(select(User.full_name, User.locale).join(Patient, Patient.user_id == User.id)
                                 .where(Patient.id == patient_id))).one_or_none()
    return None if row is None else (row[0], row[1])
