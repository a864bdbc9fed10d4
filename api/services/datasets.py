"""Dataset uploads: inspect the archive before extracting, decode every image, store, record."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.services.uploads import ensure_storage_quota
from client.models import Dataset as DatasetOut
from core.config import Settings
from core.ids import new_id
from core.job_spec import BUILTIN_PREFIX
from core.models import DatasetRow
from core.storage import get_store, record_or_discard
from kdcore.data import imagefolder
from kdcore.data.archive import ArchiveLimits, extract_archive
from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info
from kdcore.errors import BadDataset

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def builtin_datasets() -> list[DatasetOut]:
    out = []
    for name in sorted(BUILTIN_DATASETS):
        info = builtin_info(name)
        out.append(
            DatasetOut(
                id=BUILTIN_PREFIX + name,
                name=name,
                classes=info["classes"],
                num_classes=len(info["classes"]),
                splits=info["splits"],
                size_bytes=0,
                created_at=EPOCH,
                builtin=True,
            )
        )
    return out


def create_dataset(session: Session, settings: Settings, tenant: str, path: Path, size: int, digest: str, name: str | None) -> DatasetRow:
    ensure_storage_quota(session, settings, tenant, size)
    scratch = settings.resolved_data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    extracted = Path(tempfile.mkdtemp(dir=scratch, prefix="ds-"))
    try:
        extract_archive(path, extracted, ArchiveLimits(settings.archive_max_members, settings.archive_max_bytes, settings.archive_max_ratio))
        info = imagefolder.verify(extracted)
    except BadDataset as exc:
        shutil.rmtree(extracted, ignore_errors=True)
        raise ApiError(422, exc.message, type_="urn:distillery:bad_dataset") from exc
    dataset_id = new_id("ds")
    key = f"tenants/{tenant}/datasets/{dataset_id}/archive"
    store = get_store()
    store.put_file(key, path)
    cache = settings.extracted_dataset_dir(digest)
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            extracted.rename(cache)
        except OSError:
            pass
    shutil.rmtree(extracted, ignore_errors=True)
    row = DatasetRow(
        id=dataset_id,
        tenant_id=tenant,
        name=name,
        classes=info["classes"],
        num_classes=len(info["classes"]),
        splits=info["splits"],
        size_bytes=size,
        sha256=digest,
        storage_key=key,
    )
    return record_or_discard(session, row, store, f"tenants/{tenant}/datasets/{dataset_id}")


def get_dataset(session: Session, tenant: str, dataset_id: str) -> DatasetRow | None:
    return session.scalar(select(DatasetRow).where(DatasetRow.id == dataset_id, DatasetRow.tenant_id == tenant))


def dataset_out(row: DatasetRow) -> DatasetOut:
    return DatasetOut.model_validate(row, from_attributes=True)
