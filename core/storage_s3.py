"""Objects in an S3-compatible bucket (AWS S3, MinIO, moto), so API and workers on different machines share them.

boto3's managed transfers do the heavy lifting: ``upload_file``/``download_file`` switch to
multipart (parallel parts, retried one by one) above ``multipart_threshold``, so a multi-gigabyte
teacher or dataset never sits in memory. Credentials come from boto3's usual chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance role); the endpoint from
``DISTILLERY_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL`` (and, for presigned URLs handed to clients,
``DISTILLERY_S3_PUBLIC_ENDPOINT_URL`` when they reach the store at another address).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from core.storage import CHUNK, ObjectStore, StoredObject

MULTIPART = TransferConfig(multipart_threshold=8 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=4)


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def _client(endpoint: str | None):
    # Custom endpoints (MinIO, moto, Ceph) answer path-style requests; AWS itself picks virtual hosts.
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,  # an endpoint that does not answer fails in seconds, so the caller's own retries (worker.storage_writes) take over
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


class S3Store(ObjectStore):
    """Keys live under ``s3://bucket/prefix/``; the bucket must already exist (``/readyz`` says so if not)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        if not bucket:
            raise ValueError("DISTILLERY_STORAGE_URL must name a bucket: s3://bucket/prefix")
        from core.config import get_settings

        settings = get_settings()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        endpoint = endpoint_url or settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self.client = _client(endpoint)
        # A presigned URL is signed for one host: sign for the one clients reach (e.g. a public MinIO
        # address) when it differs from the internal one the service talks to.
        public = settings.s3_public_endpoint_url
        self.signer = _client(public) if public and public != endpoint else self.client

    def _key(self, key: str) -> str:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise ValueError(f"storage key {key!r} escapes the store")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> StoredObject:
        size, digest = _sha256(path)
        self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs={"Metadata": {"sha256": digest}}, Config=MULTIPART)
        return StoredObject(key, size, digest)

    def fetch(self, key: str, dest: Path) -> Path:
        """Download to ``dest`` (via a ``.part`` file, so a half-written download is never mistaken for the object)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        self.client.download_file(self.bucket, self._key(key), str(partial), Config=MULTIPART)
        os.replace(partial, dest)
        return dest

    def open(self, key: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete_prefix(self, prefix: str) -> None:
        """Delete the object named ``prefix`` and everything under ``prefix/``, 1,000 keys per request."""
        root = self._key(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root)
        keys = [item["Key"] for page in pages for item in page.get("Contents", []) if item["Key"] == root or item["Key"].startswith(root + "/")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)

    def presigned_url(self, key: str, filename: str, expires_s: int) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._key(key), "ResponseContentDisposition": f'attachment; filename="{filename}"'}
        return self.signer.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
