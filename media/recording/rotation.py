"""After a master key rotation: re-wrap every recording's data key under the current master key.

Only the wrapped data keys change (a few dozen bytes per recording); the sealed files stay as they are, since
they are encrypted under the data keys, which do not change. Until every recording is re-wrapped the retired
key must stay in TELEMED_MASTER_PREVIOUS_KEYS (docs/retention.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from media.recording import encryption
from media.recording.models import Recording
from server.audit import services as audit
from server.audit.services import AuditContext
from server.keyring import KeyMaterial

log = structlog.get_logger("telemed.media.recording")


@dataclass
class Rewrap:
    """What a run did: re-wrapped, already under the current key, and what it could not open."""

    key_id: str
    rewrapped: list[uuid.UUID] = field(default_factory=list)
    already: int = 0
    unknown_key: dict[str, list[uuid.UUID]] = field(default_factory=dict)  # master key id -> recordings
    not_unwrapping: list[uuid.UUID] = field(default_factory=list)  # its key id is known but it does not open

    @property
    def complete(self) -> bool:
        """Every recording with a key is under the current master key: the retired ones may be removed."""
        return not self.unknown_key and not self.not_unwrapping


async def rewrap_all(session: AsyncSession, *, keys: KeyMaterial, now: dt.datetime,
                     ctx: AuditContext = audit.SYSTEM) -> Rewrap:
    """Re-wrap the data key of every recording not under the current master key; idempotent (a second run finds
    nothing to do). Erased recordings (no key) are left alone. A recording whose key cannot be opened is
    reported, not fatal: the others are re-wrapped all the same.

    One audit entry per recording re-wrapped, so each recording's history says under which key it was when.
    """
    result = Rewrap(key_id=keys.master_key_id)
    result.already = int(await session.scalar(select(func.count()).select_from(Recording).where(
        Recording.wrapped_key.is_not(None), Recording.key_id == keys.master_key_id)) or 0)
    # Locked until the commit: the retention purge cannot erase one in between and have its key re-written.
    others = (await session.scalars(select(Recording).where(
        Recording.wrapped_key.is_not(None), Recording.key_id != keys.master_key_id)
        .order_by(Recording.started_at, Recording.id).with_for_update())).all()
    for recording in others:
        wrapped, old_key = recording.wrapped_key, keys.master_key_for(recording.key_id)
        if wrapped is None:
            continue  # the query leaves these out
        if old_key is None:
            result.unknown_key.setdefault(recording.key_id, []).append(recording.id)
            continue
        try:
            data_key = encryption.unwrap(wrapped, old_key)
        except encryption.Tampered:
            log.warning("recording_key_does_not_unwrap", recording_id=str(recording.id), key_id=recording.key_id)
            result.not_unwrapping.append(recording.id)
            continue
        previous_id = recording.key_id
        recording.wrapped_key = encryption.wrap(data_key, keys.master_key)
        recording.key_id = keys.master_key_id
        await audit.record(session, ctx=ctx, action="recording.rewrapped", object_type="recording",
                           object_id=recording.id, detail={"from_key_id": previous_id,
                                                           "to_key_id": keys.master_key_id}, now=now)
        result.rewrapped.append(recording.id)
    return result
