"""Appending to the audit chain, verifying it, checkpointing it, and a patient's view of it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import checkpoints, rules
from server.audit.models import AuditEntry, AuditHead
from server.auth.models import User
from server.db.base import utcnow


@dataclass(frozen=True)
class AuditContext:
    """Who is acting and from where; built once per request (or per CLI command / task)."""

    actor_user_id: uuid.UUID | None = None
    actor_role: str | None = None
    request_id: str | None = None
    ip_hash: str | None = None


    def acting_as(self, user_id: uuid.UUID, role: str) -> AuditContext:
        """The same request, attributed to the user it has just identified (sign-in, registration)."""
        return AuditContext(user_id, role, self.request_id, self.ip_hash)


SYSTEM = AuditContext(actor_role="system")


def hash_ip(key: bytes, ip: str | None) -> str | None:
    """A keyed hash: lets the clinic link events from one address without storing the address."""
    if not ip:
        return None
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:32]


async def record(
    session: AsyncSession,
    *,
    ctx: AuditContext,
    action: str,
    object_type: str,
    object_id: uuid.UUID | str | None = None,
    subject_patient_id: uuid.UUID | None = None,
    outcome: str = "success",
    detail: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Append one entry in the caller's transaction, so the entry exists exactly when the change does.

    Returns the entry's sequence number.
    """
    bumped = await session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash).execution_options(synchronize_session=False)
    )
    seq, prev_hash = bumped.one()
    fields: dict[str, Any] = {
        "seq": seq,
        "at": now or utcnow(),
        "actor_user_id": ctx.actor_user_id,
        "actor_role": ctx.actor_role,
        "action": action,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "subject_patient_id": subject_patient_id,
        "outcome": outcome,
        "request_id": ctx.request_id,
        "ip_hash": ctx.ip_hash,
        "detail": dict(detail or {}),
        "prev_hash": prev_hash,
    }
    fields["hash"] = rules.entry_hash(fields)
    # Core insert: the entry is never edited, so it needs no ORM identity (and saves a flush per event).
    await session.execute(insert(AuditEntry).values(**fields))
    await session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(hash=fields["hash"])
        .execution_options(synchronize_session=False)
    )
    return int(seq)


_COLUMNS = [getattr(AuditEntry, name) for name in (*rules.HASHED_FIELDS, "hash")]


@dataclass
class VerifyReport:
    ok: bool
    entries: int
    checkpoints: int
    broken_seq: int | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)
    covered_to: int = 0  # the newest entry a signed checkpoint vouches for

    def summary(self) -> str:
        if self.broken_seq is not None:
            return f"audit chain broken at entry {self.broken_seq}: {self.reason}"
        if self.problems:
            return "audit checkpoints unusable: " + "; ".join(self.problems)
        summary = f"audit chain intact: {self.entries} entries, {self.checkpoints} checkpoints verified"
        if self.entries > self.covered_to:
            # Up to the newest checkpoint, tampering is caught even by someone who can rewrite the table;
            # after it, only by the chain itself (and the head row).
            summary += f"; entries after {self.covered_to} are not yet covered by a signed checkpoint"
        return summary


async def verify(session: AsyncSession, *, checkpoints_dir: Path, public_key: Ed25519PublicKey) -> VerifyReport:
    """Walk the whole chain and the signed checkpoints; name the first entry that does not hold."""
    loaded = checkpoints.load_checkpoints(checkpoints_dir, public_key)
    problems = [f"{c.path.name}: {c.problem}" for c in loaded if c.checkpoint is None]
    walker = rules.ChainWalker({c.checkpoint.seq: c.checkpoint.hash for c in loaded if c.checkpoint})
    broken: rules.ChainBreak | None = None
    # The head first, then entries up to it: appends committed meanwhile (a live clinic) are simply
    # not looked at, instead of looking like a chain whose tail was cut.
    head = (await session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1))).one()
    result = await session.stream(select(*_COLUMNS).where(AuditEntry.seq <= head.seq).order_by(AuditEntry.seq)
                                  .execution_options(yield_per=2000))
    async for row in result.mappings():
        broken = walker.feed(dict(row))
        if broken is not None:
            break
    await result.close()
    if broken is None:
        broken = walker.finish(head_seq=head.seq, head_hash=head.hash)
    return VerifyReport(
        ok=broken is None and not problems, entries=walker.count, checkpoints=len(walker.checkpoints),
        broken_seq=broken.seq if broken else None, reason=broken.reason if broken else None,
        problems=problems, covered_to=max((seq for seq in walker.checkpoints if seq <= walker.count), default=0),
    )


async def write_checkpoint(session: AsyncSession, *, folder: Path, key: Ed25519PrivateKey,
                           now: dt.datetime | None = None) -> Path | None:
    """Sign the chain's current tip into `folder`; nothing to do on an empty chain."""
    head = (await session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1))).one()
    if head.seq == 0:
        return None
    at = (now or utcnow()).isoformat()
    return checkpoints.write_checkpoint(folder, checkpoints.Checkpoint(head.seq, head.hash, at), key)


@dataclass(frozen=True)
class AccessLogItem:
    at: dt.datetime
    action: str
    object_type: str
    outcome: str
    actor_role: str | None
    actor_name: str | None
    by_patient_self: bool


async def access_log(session: AsyncSession, *, patient_id: uuid.UUID, patient_user_id: uuid.UUID,
                     limit: int = 50, before_seq: int | None = None) -> list[tuple[int, AccessLogItem]]:
    """Who touched this patient's data, newest first; staff are named, as the patient has a right to know."""
    query = (
        select(AuditEntry, User.full_name)
        .outerjoin(User, User.id == AuditEntry.actor_user_id)
        .where(AuditEntry.subject_patient_id == patient_id)
        .order_by(AuditEntry.seq.desc())
        .limit(limit)
    )
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    rows = (await session.execute(query)).all()
    items = []
    for entry, name in rows:
        own = entry.actor_user_id == patient_user_id
        items.append((entry.seq, AccessLogItem(
            at=entry.at, action=entry.action, object_type=entry.object_type, outcome=entry.outcome,
            actor_role=entry.actor_role, actor_name=None if own else name, by_patient_self=own,
        )))
    return items
