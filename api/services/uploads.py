"""Spool an upload to a private temp file with a size cap and a sha256, never holding it in memory;
and keep each tenant under its storage quota (teachers + datasets + artifacts)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from fastapi import UploadFile
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from core.config import Settings
from core.models import ArtifactRow, CheckpointRow, DatasetRow, JobRow, TeacherRow
from core.storage import CHUNK, UploadTooLarge, copy_chunks_hashed

QUOTA_RETRY_AFTER_S = 3600


@contextmanager
def spooled(chunks: Iterable[bytes], settings: Settings, suffix: str, what: str, empty_hint: str) -> Iterator[tuple[Path, int, str]]:
    """Yield (path, size, sha256) of the streamed bytes on local disk; the file is removed afterwards.

    ``what`` names the bytes in the refusals (e.g. "the upload"), ``empty_hint`` says what to do about an empty one.
    """
    scratch = settings.resolved_data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, suffix=suffix, delete=False) as sink:
        path = Path(sink.name)
        try:
            size, digest = copy_chunks_hashed(chunks, sink, settings.max_upload_bytes)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            if isinstance(exc, UploadTooLarge):
                raise ApiError(413, f"{what} is larger than the {settings.max_upload_bytes}-byte limit (DISTILLERY_MAX_UPLOAD_BYTES)") from None
            raise
    try:
        if size == 0:
            raise ApiError(422, f"{what} is empty; {empty_hint}")
        yield path, size, digest
    finally:
        path.unlink(missing_ok=True)


def spooled_upload(upload: UploadFile, settings: Settings, suffix: str = "") -> AbstractContextManager[tuple[Path, int, str]]:
    """Yield (path, size, sha256) of the upload on local disk; the file is removed afterwards."""
    return spooled(iter(lambda: upload.file.read(CHUNK), b""), settings, suffix, "the upload", "send the file in the multipart field 'file'")


def tenant_storage_bytes(session: Session, tenant: str) -> int:
    """Bytes the tenant keeps in storage: its teachers, datasets, job artifacts and checkpoints (not sets registered where they lie)."""
    checkpoints = select(func.coalesce(func.sum(CheckpointRow.size_bytes), 0)).join(JobRow, JobRow.id == CheckpointRow.job_id).where(JobRow.tenant_id == tenant)
    total = session.scalar(checkpoints) or 0
    for model in (TeacherRow, DatasetRow, ArtifactRow):
        query = select(func.coalesce(func.sum(model.size_bytes), 0)).where(model.tenant_id == tenant)
        if model is DatasetRow:
            query = query.where(DatasetRow.uri.is_(None))
        total += session.scalar(query) or 0
    return int(total)


def ensure_storage_quota(session: Session, settings: Settings, tenant: str, incoming_bytes: int) -> None:
    """429 with Retry-After when storing ``incoming_bytes`` more would pass DISTILLERY_TENANT_MAX_STORAGE_BYTES.

    Checked before the upload is stored; two uploads racing each other can overshoot by one file.
    """
    used = tenant_storage_bytes(session, tenant)
    limit = settings.tenant_max_storage_bytes
    if used + incoming_bytes > limit:
        raise ApiError(
            429,
            f"this tenant stores {used} bytes and this upload adds {incoming_bytes}, over its quota of {limit} bytes; "
            "delete teachers or datasets it no longer needs, then retry",
            headers={"Retry-After": str(QUOTA_RETRY_AFTER_S)},
        )
