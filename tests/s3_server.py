"""A real S3-compatible server on 127.0.0.1 for the tests: moto's, in a thread of the test process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from moto.server import ThreadedMotoServer

from media.recording.storage import StorageLocation
from tests.services import free_port

ACCESS_KEY, SECRET_KEY, REGION = "telemed-test", "telemed-test-secret", "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def bucket(self, name: str) -> str:
        boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                     aws_secret_access_key=SECRET_KEY).create_bucket(Bucket=name)
        return name

    def location(self, bucket: str, spool: str, prefix: str = "") -> StorageLocation:
        return StorageLocation(folder=spool, bucket=bucket, prefix=prefix, endpoint_url=self.endpoint_url,
                               region=REGION, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)

    def settings(self, bucket: str) -> dict[str, str]:
        """Settings for an app whose recordings go to `bucket`."""
        return {"recordings_s3_bucket": bucket, "recordings_s3_endpoint_url": self.endpoint_url,
                "recordings_s3_region": REGION, "recordings_s3_access_key_id": ACCESS_KEY,
                "recordings_s3_secret_access_key": SECRET_KEY}


@contextmanager
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
