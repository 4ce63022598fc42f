"""Targeted sampling reasons that arise after a consultation's decision, added to the decision when they do.

A consultation gets its one decision when it completes (qa_audit.services.decide_once), on the facts as they stand
then. Two rules read facts that often come later: a patient's complaint or low rating (qa_audit.feedback), and a
diagnosis or prescription the physician tried to enter in a primary consultation's protocol, which is mostly
written after the call. Such a fact changes the decision when it comes (`add_reasons`): an unsampled consultation
becomes sampled, a sampled one gains the reason, and the change is audited (`qa.sampling_targeted_late`, with the
reasons added), so a replay counts each reason from the time it was added and flags one with no fact behind it
(`when_added`, qa_audit.replay).

Feedback is applied in its own transaction. A refusal is recorded by the records domain (the audit entry
`protocol.forbidden_field_refused`), which knows nothing of QA, so the sampling sweep applies recent refusals
(`apply_pending_refusals`): safe to run twice, as a reason already there is not added again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit import sampling
from qa_audit.models import SamplingDecision
from server.audit import services as audit
from server.audit.models import AuditEntry
from server.scheduling.models import Consultation

#: The audit entry of a late change to a decision; its detail lists the reasons added.
LATE = "qa.sampling_targeted_late"
#: The records domain's entry for a diagnosis or prescription refused in a primary consultation's protocol.
REFUSED = "protocol.forbidden_field_refused"
#: How far back the sweep looks for facts its decisions may have missed. The sweep runs every few minutes, so this
#: only matters when it has been down; two days leave a weekend's outage a margin without rereading the whole log.
RECONCILE_WINDOW = dt.timedelta(days=2)
_NOBODY = uuid.UUID(int=0)


def rule_reasons(policy: sampling.SamplingPolicy, among: Collection[sampling.Reason], *,
                 complaint: bool = False, rating: int | None = None,
                 forbidden_fields_refused: bool = False) -> tuple[sampling.Reason, ...]:
    """The reasons in `among` that the targeted rules give on these late facts, by the same rules (thresholds and
    switched-off rules included) as a decision."""
    facts = sampling.Facts(consultation_id=_NOBODY, physician_id=_NOBODY, month="", complaint=complaint,
                           rating=rating, forbidden_fields_refused=forbidden_fields_refused)
    return tuple(reason for reason in sampling.targeted_reasons(facts, policy) if reason in among)


def refusal_reasons(policy: sampling.SamplingPolicy) -> tuple[sampling.Reason, ...]:
    """What a refused diagnosis or prescription adds: `forbidden_fields`, unless the clinic switched the rule off."""
    return rule_reasons(policy, (sampling.Reason.forbidden_fields,), forbidden_fields_refused=True)


async def add_reasons(session: AsyncSession, *, consultation_id: uuid.UUID, patient_id: uuid.UUID | None,
                      reasons: Sequence[sampling.Reason], now: dt.datetime) -> tuple[SamplingDecision | None, bool]:
    """The consultation's decision (None if not made yet: it will read the facts itself) with `reasons` added,
    and whether this call changed it. The reasons missing are appended, the consultation becomes sampled if it
    was not, and the change is audited. Idempotent: a reason already there is not added twice."""
    decision = (await session.scalars(
        select(SamplingDecision).where(SamplingDecision.consultation_id == consultation_id)
        .with_for_update().execution_options(populate_existing=True))).one_or_none()  # the top-up writes it too
    if decision is None:
        return None, False
    missing = [reason.value for reason in reasons if reason.value not in decision.reasons]
    if not missing:
        return decision, False
    was_sampled = decision.sampled
    decision.sampled = True
    decision.reasons = [*decision.reasons, *missing]  # a new list: the JSON column sees the change
    await audit.record(session, ctx=audit.SYSTEM, action=LATE, object_type="consultation", object_id=consultation_id,
                       subject_patient_id=patient_id, detail={"reasons": missing, "was_sampled": was_sampled},
                       now=now)
    return decision, True


async def apply_pending_refusals(session: AsyncSession, *, policy: sampling.SamplingPolicy,
                                 now: dt.datetime) -> int:
    """Refusals of the last `RECONCILE_WINDOW` whose consultation is decided without their reason, applied; how
    many decisions changed. A refusal before the decision is already in it (its facts read the audit log)."""
    wanted = refusal_reasons(policy)
    if not wanted:
        return 0
    refused = (await session.scalars(select(AuditEntry.object_id).distinct().where(
        AuditEntry.action == REFUSED, AuditEntry.object_type == "consultation",
        AuditEntry.at >= now - RECONCILE_WINDOW))).all()
    ids = {uuid.UUID(object_id) for object_id in refused if object_id is not None}
    if not ids:
        return 0
    decided = (await session.execute(
        select(SamplingDecision.consultation_id, SamplingDecision.reasons, Consultation.patient_id)
        .join(Consultation, Consultation.id == SamplingDecision.consultation_id)
        .where(SamplingDecision.consultation_id.in_(ids)))).all()
    changed = 0
    for consultation_id, reasons, patient_id in sorted(decided, key=lambda row: str(row[0])):  # a fixed lock order
        if all(reason.value in reasons for reason in wanted):
            continue  # the common case, seen without taking the row's lock
        _, did_change = await add_reasons(session, consultation_id=consultation_id, patient_id=patient_id,
                                          reasons=wanted, now=now)
        changed += did_change
    return changed


async def refused_after(session: AsyncSession, consultation_id: uuid.UUID, as_of: dt.datetime) -> dt.datetime | None:
    """When a diagnosis or prescription was first refused on the consultation after `as_of` (its decision's time),
    if it was: from then on its decision should carry the reason."""
    return await session.scalar(select(func.min(AuditEntry.at)).where(
        AuditEntry.action == REFUSED, AuditEntry.object_type == "consultation",
        AuditEntry.object_id == str(consultation_id), AuditEntry.at > as_of))


async def when_added(session: AsyncSession, consultation_id: uuid.UUID,
                     arisen: Iterable[tuple[sampling.Reason, dt.datetime]]
                     ) -> tuple[tuple[sampling.Reason, dt.datetime], ...]:
    """For a replay: each late reason (with when its fact arose) paired with when it was added to the decision,
    the first `qa.sampling_targeted_late` entry naming it from then on. One never added keeps its fact's time, and
    the replay finds it missing from the decision; a reason added with no fact behind it is not here at all, so
    the replay finds it too many."""
    arisen = list(arisen)
    if not arisen:
        return ()
    entries = (await session.execute(
        select(AuditEntry.at, AuditEntry.detail).where(
            AuditEntry.action == LATE, AuditEntry.object_type == "consultation",
            AuditEntry.object_id == str(consultation_id)).order_by(AuditEntry.seq))).all()
    named = [(at, _named(detail)) for at, detail in entries]
    return tuple((reason, next((at for at, codes in named if at >= arose and reason.value in codes), arose))
                 for reason, arose in arisen)


def _named(detail: object) -> list[object]:
    """The reason codes a late entry's detail lists (none, if it is not the shape `add_reasons` writes)."""
    reasons = detail.get("reasons") if isinstance(detail, dict) else None
    return reasons if isinstance(reasons, list) else []
