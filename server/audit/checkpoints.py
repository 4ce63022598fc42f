"""Signed checkpoints of the chain's tip, kept outside the database.

Rewriting the whole chain consistently is possible for someone with database access; rewriting it so
that it still matches checkpoints signed with a key the database never held is not.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str

    def message(self) -> bytes:
        return json.dumps({"at": self.at, "hash": self.hash, "seq": self.seq}, sort_keys=True,
                          separators=(",", ":")).encode()


def write_checkpoint(folder: Path, checkpoint: Checkpoint, key: Ed25519PrivateKey) -> Path:
    """Write one signed checkpoint file atomically; an existing one for the same `seq` is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{checkpoint.seq:012d}.json"
    if path.exists():
        return path
    body = {"seq": checkpoint.seq, "hash": checkpoint.hash, "at": checkpoint.at,
            "signature": base64.b64encode(key.sign(checkpoint.message())).decode()}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(body, indent=1))
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class LoadedCheckpoint:
    path: Path
    checkpoint: Checkpoint | None  # None when the file or its signature is bad
    problem: str | None = None


def load_checkpoints(folder: Path, public_key: Ed25519PublicKey) -> list[LoadedCheckpoint]:
    """Every checkpoint file in `seq` order, each with its signature checked."""
    if not folder.is_dir():
        return []
    loaded = []
    for path in sorted(folder.glob("*.json")):
        try:
            body = json.loads(path.read_text())
            checkpoint = Checkpoint(int(body["seq"]), str(body["hash"]), str(body["at"]))
            public_key.verify(base64.b64decode(body["signature"]), checkpoint.message())
        except (ValueError, KeyError, TypeError, InvalidSignature):
            loaded.append(LoadedCheckpoint(path, None, "unreadable or wrongly signed"))
            continue
        loaded.append(LoadedCheckpoint(path, checkpoint))
    return loaded
