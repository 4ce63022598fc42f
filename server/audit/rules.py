"""The audit chain's arithmetic: canonical encoding, entry hashes, and walking a chain. Pure."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64

HASHED_FIELDS = (
    "seq", "at", "actor_user_id", "actor_role", "action", "object_type", "object_id",
    "subject_patient_id", "outcome", "request_id", "ip_hash", "detail", "prev_hash",
)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """One byte string per entry, independent of backend and column order (sorted-key JSON)."""
    payload = {name: _plain(fields[name]) for name in HASHED_FIELDS}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


class ChainWalker:
    """Checks entries fed in `seq` order against each other and against signed checkpoints.

    A missing `seq` means a deleted row; a wrong `prev_hash` a deleted or moved predecessor; a hash
    that does not match the fields an edited or swapped row; a hash that differs from a checkpoint
    a chain rewritten from some point on.
    """

    def __init__(self, checkpoints: Mapping[int, str] | None = None) -> None:
        self.checkpoints = dict(checkpoints or {})
        self.count = 0
        self.last_hash = GENESIS_HASH

    def feed(self, entry: Mapping[str, Any]) -> ChainBreak | None:
        expected_seq = self.count + 1
        if entry["seq"] != expected_seq:
            return ChainBreak(expected_seq, f"entry {expected_seq} is missing")
        if entry["prev_hash"] != self.last_hash:
            return ChainBreak(expected_seq, "does not follow the entry before it")
        if entry_hash(entry) != entry["hash"]:
            return ChainBreak(expected_seq, "its contents do not match its hash")
        signed = self.checkpoints.get(expected_seq)
        if signed is not None and signed != entry["hash"]:
            return ChainBreak(expected_seq, "differs from the signed checkpoint")
        self.count, self.last_hash = expected_seq, entry["hash"]
        return None

    def finish(self, *, head_seq: int, head_hash: str) -> ChainBreak | None:
        """After the last entry: the head row and the checkpoints must not point past it."""
        if head_seq != self.count or head_hash != self.last_hash:
            return ChainBreak(self.count + 1, "entries after this point were deleted")
        beyond = [seq for seq in self.checkpoints if seq > self.count]
        if beyond:
            return ChainBreak(self.count + 1, f"a signed checkpoint covers entry {min(beyond)}, now gone")
        return None
