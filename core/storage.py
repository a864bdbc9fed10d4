"""Object storage behind one small interface: a local folder (``file://``) or S3 (``s3://``).

Uploads are streamed in chunks with a size cap and hashed on the way; nothing reads a whole file
into memory. Workers get local paths through :meth:`ObjectStore.fetch`, so kdcore sees plain files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO
from urllib.parse import urlparse

CHUNK = 1 << 20


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


def copy_hashed(source: BinaryIO, sink: IO[bytes], limit: int | None = None) -> tuple[int, str]:
    return copy_chunks_hashed(iter(lambda: source.read(CHUNK), b""), sink, limit)


def copy_chunks_hashed(chunks: Iterable[bytes], sink: IO[bytes], limit: int | None = None) -> tuple[int, str]:
    """Write the chunks to ``sink``; (size, sha256); UploadTooLarge as soon as the size passes ``limit``."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if limit is not None and size > limit:
            raise UploadTooLarge(limit)
        digest.update(chunk)
        sink.write(chunk)
    return size, digest.hexdigest()


class ObjectStore:
    """Keys are relative POSIX paths such as ``tenants/t_1/teachers/tch_1/model.safetensors``."""

    def put_file(self, key: str, path: Path) -> StoredObject:
        raise NotImplementedError

    def fetch(self, key: str, dest: Path) -> Path:
        """A local file with the object's bytes (the object itself for a local store)."""
        raise NotImplementedError

    def open(self, key: str) -> BinaryIO:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Raise if the store cannot be reached (``/readyz``)."""
        raise NotImplementedError

    def presigned_url(self, key: str, filename: str, expires_s: int) -> str | None:
        """A time-limited URL that downloads the object without the API; None where the store has none."""
        return None


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key {key!r} escapes the store")
        return path

    def put_file(self, key: str, path: Path) -> StoredObject:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + ".part")
        try:
            with open(path, "rb") as source, open(temp, "wb") as sink:
                size, digest = copy_hashed(source, sink)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temp, target)
        except BaseException:  # a full disk or an interruption: give the space back, leave no partial object
            temp.unlink(missing_ok=True)
            raise
        return StoredObject(key, size, digest)

    def fetch(self, key: str, dest: Path) -> Path:
        return self._path(key)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def check(self) -> None:
        probe = self.root / ".readyz"
        probe.write_bytes(b"ok")
        probe.unlink()


def store_from_url(url: str) -> ObjectStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme == "s3":
        from core.storage_s3 import S3Store

        return S3Store(parsed.netloc, parsed.path.lstrip("/"))
    raise ValueError(f"unsupported DISTILLERY_STORAGE_URL scheme {parsed.scheme!r}: use file:// or s3://")


_STORE: ObjectStore | None = None


def get_store() -> ObjectStore:
    global _STORE
    if _STORE is None:
        from core.config import get_settings

        _STORE = store_from_url(get_settings().resolved_storage_url)
    return _STORE


def record_or_discard(session, row, store: ObjectStore, prefix: str):
    """Commit the row describing a stored upload; if that fails, delete the objects so nothing half-written remains."""
    try:
        session.add(row)
        session.commit()
    except Exception:
        session.rollback()
        store.delete_prefix(prefix)
        raise
    return row
