"""Datasets: uploads (inspect the archive before extracting, decode every image, store, record) and sets registered by reference.

An upload whose decoded size (3 bytes a pixel at its images' own sizes) is over
``DISTILLERY_INMEMORY_MAX_BYTES`` is converted once, here, into WebDataset shards of about
``DISTILLERY_SHARD_BYTES`` with an ``index.json``; jobs then stream it. A set registered by URI is
indexed where it lies (no image passes through the API), a sample of its images is decoded, and only
its index is stored.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.schemas.datasets import DatasetFromUri
from api.services.uploads import ensure_storage_quota
from client.models import Dataset as DatasetOut
from core.config import Settings
from core.dataset_uris import dataset_uri_refusal, s3_endpoint, store_uri
from core.ids import new_id
from core.job_spec import BUILTIN_PREFIX
from core.models import DatasetRow
from core.storage import ObjectStore, get_store, record_or_discard
from kdcore.data import imagefolder
from kdcore.data.archive import ArchiveLimits, extract_archive
from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info
from kdcore.data.catalog import index_uri, verify_sample
from kdcore.data.index import INDEX_FILE, DatasetIndex
from kdcore.data.shards import write_shards
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
        raise _refused(exc) from exc
    dataset_id = new_id("ds")
    prefix = f"tenants/{tenant}/datasets/{dataset_id}"
    store = get_store()
    classes, splits = info["classes"], info["splits"]
    described = {"tenant_id": tenant, "name": name, "classes": classes, "num_classes": len(classes), "splits": splits, "verified": sum(splits.values())}
    if info["decoded_bytes"] > settings.inmemory_max_bytes:
        try:
            index, stored = _store_as_shards(settings, store, extracted, prefix)
        finally:
            shutil.rmtree(extracted, ignore_errors=True)
        key = f"{prefix}/{INDEX_FILE}"
        row = DatasetRow(
            id=dataset_id, **described, size_bytes=stored, sha256=digest, storage_key=key, layout="index", format="webdataset", shards=index.shard_count()
        )
        return record_or_discard(session, row, store, prefix)
    key = f"{prefix}/archive"
    store.put_file(key, path)
    cache = settings.extracted_dataset_dir(digest)
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            extracted.rename(cache)
        except OSError:
            pass
    shutil.rmtree(extracted, ignore_errors=True)
    row = DatasetRow(id=dataset_id, **described, size_bytes=size, sha256=digest, storage_key=key)
    return record_or_discard(session, row, store, prefix)


def _refused(exc: BadDataset) -> ApiError:
    return ApiError(422, exc.message, type_="urn:distillery:bad_dataset")


def _store_as_shards(settings: Settings, store: ObjectStore, extracted: Path, prefix: str) -> tuple[DatasetIndex, int]:
    """Write the tree as WebDataset shards and store them with an index naming where they lie; (index, bytes stored)."""
    out = Path(tempfile.mkdtemp(dir=settings.resolved_data_dir / "tmp", prefix="shards-"))
    try:
        index = write_shards(extracted, out, settings.shard_bytes).model_copy(update={"base_uri": store_uri(settings, prefix + "/")})
        index.write(out / INDEX_FILE)
        stored = 0
        try:
            for file in sorted(p for p in out.rglob("*") if p.is_file()):
                stored += store.put_file(f"{prefix}/{file.relative_to(out).as_posix()}", file).size_bytes
        except Exception:
            store.delete_prefix(prefix)
            raise
        return index, stored
    finally:
        shutil.rmtree(out, ignore_errors=True)


def register_dataset(session: Session, settings: Settings, tenant: str, body: DatasetFromUri) -> DatasetRow:
    """Index the set where it lies, decode a sample, store only the index; 422 for a URI outside the tenant's prefixes or a broken set."""
    refusal = dataset_uri_refusal(settings, tenant, body.uri)
    if refusal is not None:
        raise ApiError(422, refusal)
    uri = body.uri.rstrip("/") + "/"
    endpoint = s3_endpoint(settings)
    try:
        index = index_uri(uri, body.format, endpoint)
        verified = verify_sample(index, settings.dataset_verify_samples, endpoint)
    except BadDataset as exc:
        raise _refused(exc) from exc
    except (OSError, BotoCoreError, ClientError) as exc:
        reason = exc.response.get("Error", {}).get("Code", str(exc)) if isinstance(exc, ClientError) else str(exc) or type(exc).__name__
        raise ApiError(422, f"the dataset at {uri} could not be read: {reason}") from None
    dataset_id = new_id("ds")
    prefix = f"tenants/{tenant}/datasets/{dataset_id}"
    text = index.model_dump_json().encode()
    store = get_store()
    scratch = settings.resolved_data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, suffix=".json") as handle:
        handle.write(text)
        handle.flush()
        store.put_file(f"{prefix}/{INDEX_FILE}", Path(handle.name))
    row = DatasetRow(
        id=dataset_id,
        tenant_id=tenant,
        name=body.name,
        classes=index.classes,
        num_classes=len(index.classes),
        splits=index.counts(),
        size_bytes=index.size_bytes(),
        sha256=hashlib.sha256(text).hexdigest(),
        storage_key=f"{prefix}/{INDEX_FILE}",
        layout="index",
        format=body.format,
        uri=uri,
        shards=index.shard_count(),
        verified=verified,
    )
    return record_or_discard(session, row, store, prefix)


def get_dataset(session: Session, tenant: str, dataset_id: str) -> DatasetRow | None:
    return session.scalar(select(DatasetRow).where(DatasetRow.id == dataset_id, DatasetRow.tenant_id == tenant))


def dataset_out(row: DatasetRow) -> DatasetOut:
    return DatasetOut.model_validate(row, from_attributes=True)
