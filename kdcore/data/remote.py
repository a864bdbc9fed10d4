"""Objects named by URI, ``file:///folder/...`` or ``s3://bucket/prefix/...``: list, read, read a range, download.

Datasets registered by reference and the shards of large uploads live behind such URIs; the
service checks which prefixes a tenant may use, kdcore only reads. boto3 is imported on first use
of an ``s3://`` URI (the endpoint from ``endpoint_url``, else boto3's own ``AWS_ENDPOINT_URL``), and
each process makes its own client, so loader workers forked from the trainer never share one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

LIST_PAGE = 1000


@dataclass(frozen=True)
class Listed:
    """One object under a prefix: its key relative to the prefix and its size."""

    name: str
    size: int


def join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name.lstrip("/")


def local_path(uri: str) -> Path | None:
    """The file a ``file://`` URI names; ``None`` for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


_CLIENTS: dict[tuple[int, str | None], object] = {}


def s3_client(endpoint_url: str | None = None):
    """One boto3 client per process and endpoint (clients are not fork-safe, so the pid is part of the key)."""
    key = (os.getpid(), endpoint_url)
    if key not in _CLIENTS:
        import boto3
        from botocore.config import Config

        config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 5}, s3={"addressing_style": "path" if endpoint_url else "auto"})
        _CLIENTS[key] = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
    return _CLIENTS[key]


def list_objects(prefix_uri: str, endpoint_url: str | None = None) -> list[Listed]:
    """Everything below ``prefix_uri``, names relative to it, sorted: objects, folders (``name/``, size 0; S3 folder
    markers) and, for local folders, symbolic links (size -1, so the caller can refuse them)."""
    folder = local_path(prefix_uri)
    if folder is not None:
        out = []
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_symlink():
                out.append(Listed(name, -1))
            elif path.is_dir():
                out.append(Listed(name + "/", 0))
            elif path.is_file():
                out.append(Listed(name, path.stat().st_size))
        return out
    bucket, key = split_s3(prefix_uri)
    root = key.rstrip("/") + "/" if key else ""
    pages = s3_client(endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root, PaginationConfig={"PageSize": LIST_PAGE})
    found = [Listed(item["Key"][len(root) :], int(item["Size"])) for page in pages for item in page.get("Contents", [])]
    return sorted((listed for listed in found if listed.name), key=lambda listed: listed.name)


def read_range(uri: str, offset: int, size: int, endpoint_url: str | None = None) -> bytes:
    path = local_path(uri)
    if path is not None:
        with open(path, "rb") as handle:
            return os.pread(handle.fileno(), size, offset)
    bucket, key = split_s3(uri)
    response = s3_client(endpoint_url).get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + size - 1}")
    return response["Body"].read()


def read_all(uri: str, endpoint_url: str | None = None) -> bytes:
    path = local_path(uri)
    if path is not None:
        return path.read_bytes()
    bucket, key = split_s3(uri)
    return s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()


def open_stream(uri: str, endpoint_url: str | None = None):
    """A readable binary stream of the whole object, read front to back (a local file or the S3 body)."""
    path = local_path(uri)
    if path is not None:
        return open(path, "rb")
    bucket, key = split_s3(uri)
    return s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"]


def download(uri: str, dest: Path, endpoint_url: str | None = None) -> None:
    """Copy the object to ``dest`` (boto3's managed transfer: parallel ranged parts for large objects)."""
    from boto3.s3.transfer import TransferConfig

    bucket, key = split_s3(uri)
    config = TransferConfig(multipart_threshold=16 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=4)
    s3_client(endpoint_url).download_file(bucket, key, str(dest), Config=config)
