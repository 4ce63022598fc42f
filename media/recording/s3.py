"""Recordings in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, Yandex Object Storage ...).

The same interface as LocalStorage, with one difference forced by object stores: an object cannot be appended
to, so a live segment is written to a local spool file (fsynced chunk by chunk, as locally) and uploaded whole
when it is complete. To keep the crash semantics of the local store:

- `create` puts an empty `<key>.part` marker object at once, so the finaliser knows a segment was being
  written even if the node dies before uploading it (that segment is then `lost`, as with a local `.part`);
- `close` (the segment complete) uploads the spool file over the marker, before the journal entry is written;
- `publish` copies `<key>.part` to `<key>` and deletes the marker and the spool file.

A crash between the journal entry and `publish` leaves a journaled `<key>.part` with the right hash, which the
finaliser accepts, exactly as locally. Everything uploaded is sealed already: the store sees no plaintext.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from media.recording.storage import PART, DurableFile, StoredFileMissing


class S3Storage:
    def __init__(self, *, bucket: str, prefix: str = "", spool: Path, endpoint_url: str | None = None,
                 region: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.spool = spool
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                         aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)

    def _key(self, key: str) -> str:
        if ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"not a storage key: {key!r}")
        return self.prefix + key

    def create(self, key: str) -> _SpooledSegment:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key + PART), Body=b"")
        return _SpooledSegment(self, key)

    def publish(self, key: str) -> None:
        source = self._key(key + PART)
        self._client.copy_object(Bucket=self.bucket, Key=self._key(key),
                                 CopySource={"Bucket": self.bucket, "Key": source})
        self._client.delete_object(Bucket=self.bucket, Key=source)
        self._spool_path(key).unlink(missing_ok=True)

    def put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        try:
            return bytes(self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())
        except ClientError as exc:
            raise _missing(exc, key) from None

    def read(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(key),
                                             Range=f"bytes={offset}-{offset + length - 1}")
        except ClientError as exc:
            raise _missing(exc, key) from None
        return bytes(answer["Body"].read())

    def size(self, key: str) -> int:
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            raise _missing(exc, key) from None

    def list(self, prefix: str) -> list[str]:
        keys = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                           Prefix=self._key(prefix) + "/"):
            keys += [item["Key"].removeprefix(self.prefix) for item in page.get("Contents", [])]
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        keys = [self._key(key) for key in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # the API's limit per request
            self._client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})
        spooled = self.spool / prefix
        if spooled.is_dir():
            for path in sorted(spooled.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            spooled.rmdir()

    def _spool_path(self, key: str) -> Path:
        return self.spool / (key + PART)

    def _upload(self, key: str) -> None:
        with self._spool_path(key).open("rb") as handle:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key + PART), Body=handle.read())


class _SpooledSegment(DurableFile):
    """A live segment: appended to a local 0600 file, made durable by `flush()`, uploaded by `close()`."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        self._storage, self._key = storage, key
        path = storage._spool_path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        super().__init__(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            super().close()
            self._storage._upload(self._key)


def _missing(exc: ClientError, key: str) -> Exception:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return StoredFileMissing(key) if code in ("NoSuchKey", "404", "NotFound") else exc
