"""Where sealed recording files live: a local directory by default, behind a small interface.

Keys are relative paths (`<recording id>/segments/patient.video.0/00003.seg`). A live segment is created under
its key with `.part` appended and published (renamed) when complete, so a crash leaves an unfinished segment
recognisable. Everything stored is sealed already (media.recording.encryption): a store sees no plaintext.

An S3-compatible store (media.recording.s3) fits the same interface; `StorageLocation` says which one to use.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from server.durable_files import fsync_dir, write_atomically

PART = ".part"


class StoredFileMissing(FileNotFoundError):
    """No file under this key."""


class LiveFile(Protocol):
    """A segment being written: appended to, made durable by `flush()`, published when complete."""

    def write(self, data: bytes) -> object: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class RecordingStorage(Protocol):
    def create(self, key: str) -> LiveFile: ...

    def publish(self, key: str) -> None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def read(self, key: str, offset: int, length: int) -> bytes: ...

    def size(self, key: str) -> int: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete_prefix(self, prefix: str) -> None: ...


@dataclass(frozen=True)
class StorageLocation:
    """Where a recording's files go, as plain data: it travels to a media worker with `start_recording`.

    Without `bucket`, files live under `folder`. With one, they go to that S3-compatible bucket (under `prefix`)
    and `folder` holds only the segments being written (media.recording.s3).
    """

    folder: str
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)

    def open(self) -> RecordingStorage:
        if self.bucket is None:
            return LocalStorage(Path(self.folder))
        from media.recording.s3 import S3Storage  # boto3 is imported only where a bucket is configured

        return S3Storage(bucket=self.bucket, prefix=self.prefix, spool=Path(self.folder),
                         endpoint_url=self.endpoint_url, region=self.region, access_key_id=self.access_key_id,
                         secret_access_key=self.secret_access_key)

    def as_params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LocalStorage:
    """Files under one directory (`var/recordings/` by default), folders 0700 and files 0600."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or ".." in Path(key).parts:
            raise ValueError(f"not a storage key: {key!r}")
        return path

    def _folder_for(self, path: Path) -> None:
        """Make the folders down to `path`, each 0700 (`mkdir(parents=True)` would leave the upper ones 0755)."""
        missing = []
        folder = path.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)

    def create(self, key: str) -> LiveFile:
        path = self._path(key + PART)
        self._folder_for(path)
        return DurableFile(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))

    def publish(self, key: str) -> None:
        """The live file becomes the stored one (atomically); its folder entry is made durable."""
        path = self._path(key)
        os.replace(self._path(key + PART), path)
        fsync_dir(path.parent)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self._folder_for(path)
        write_atomically(path, data)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoredFileMissing(key) from None

    def read(self, key: str, offset: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        except FileNotFoundError:
            raise StoredFileMissing(key) from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise StoredFileMissing(key) from None

    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a folder), unfinished ones with `.part`; temporary files left out."""
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        root = self.root.resolve()
        return sorted(str(path.resolve().relative_to(root)) for path in base.rglob("*")
                      if path.is_file() and not path.name.startswith("."))

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)


class DurableFile:
    """An unbuffered file whose `flush()` is an fsync: what is flushed survives a crash of the process."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        return len(data)

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BackgroundWriter:
    """Writes and fsyncs live files in one thread, so a slow disk never stalls the event loop's media.

    Jobs run in the order queued; `drain()` waits until everything queued so far is done. A failed job is kept
    in `errors` (the recorder reports it) and the next ones still run.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()
        self.errors: list[BaseException] = []

    def call(self, job: Callable[[], object]) -> None:
        self._queue.put(job)

    def drain(self, timeout: float = 30.0) -> bool:
        done = threading.Event()
        self._queue.put(done.set)
        return done.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception as exc:  # kept for the recorder to report
                self.errors.append(exc)


class QueuedFile:
    """A live file opened, written, fsynced and closed in the BackgroundWriter's thread, in order: creating it
    (an object store's call, say) never blocks the event loop, and it is created only after everything queued
    before it (the previous segment's journal entry and publication) is done."""

    def __init__(self, opener: Callable[[], LiveFile], writer: BackgroundWriter) -> None:
        self._handle: LiveFile | None = None
        self._writer = writer

        def open_file() -> None:
            self._handle = opener()

        writer.call(open_file)

    def write(self, data: bytes) -> None:
        self._writer.call(lambda: self._live().write(data))

    def flush(self) -> None:
        self._writer.call(lambda: self._live().flush())

    def close(self) -> None:
        self._writer.call(lambda: self._live().close())

    def _live(self) -> LiveFile:
        if self._handle is None:
            raise OSError("the live file could not be created")
        return self._handle
