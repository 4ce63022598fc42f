"""The development outbox: every message a private file under `<data_dir>/outbox/<channel>/`.

Outbox files hold addresses, phone numbers and appointment times, so the folders are 0700 and the files 0600,
and each file appears whole or not at all (a reader never sees half a message).
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from server.durable_files import write_atomically


def ensure_private_dir(folder: Path) -> Path:
    """Create `folder` (and its parent) readable by this user only; tighten it if it already exists."""
    for path in (folder.parent, folder):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
    return folder


def write_private_file(folder: Path, *, suffix: str, data: bytes, now: dt.datetime | None = None) -> Path:
    """Write `data` atomically into a new 0600 file in `folder`; names sort by creation time."""
    ensure_private_dir(folder)
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{stamp}-{uuid.uuid4().hex}{suffix}"
    final = folder / name
    write_atomically(final, data)
    return final
