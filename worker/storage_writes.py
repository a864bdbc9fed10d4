"""A job's writes to the object store, and the checkpoint it resumes from: faults retried, then named.

The store may be unreachable (S3 restarting, the network gone) or full (a local disk). A checkpoint
or artifact write is retried with back-off (0.5 s doubling to 10 s) for ``DISTILLERY_STORAGE_PATIENCE_S``;
then the job fails with ``storage_unavailable`` and a sentence naming the write. Artifacts are
published all or nothing: their rows are written only once every file is stored, and a failed
publish deletes what it stored, so no job ever lists a partial student. A resumed attempt trusts a
stored checkpoint only if its bytes hash to the sha256 recorded with it; a torn or altered one is
skipped for the one before it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select

from core.config import get_settings
from core.db import session_scope
from core.models import CheckpointRow
from core.storage import ObjectStore, StoredObject
from kdcore.checkpoint import sha256_file
from kdcore.errors import KdError
from kdcore.export import ExportedFile

T = TypeVar("T")
log = logging.getLogger("distillery.worker")
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 10.0


class StorageUnavailable(KdError):
    code = "storage_unavailable"


class LocalFileGone(FileNotFoundError):
    """The file to store no longer exists here: nothing an outage explains, so never retried."""


def put_local_file(store: ObjectStore, key: str, path: Path) -> StoredObject:
    """``store.put_file``, refusing at once (``LocalFileGone``) when ``path`` is gone."""
    if not path.exists():
        raise LocalFileGone(f"{path} is gone")
    return store.put_file(key, path)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def with_storage_retries(operation: str, action: Callable[[], T]) -> T:
    """``action()``, again with back-off while it fails, for the patience the settings give; then ``StorageUnavailable``."""
    patience = get_settings().storage_patience_s
    deadline = time.monotonic() + patience
    delay = FIRST_DELAY_S
    while True:
        try:
            return action()
        except (ValueError, TypeError, LocalFileGone):  # a bad key or argument is a bug, a vanished source no outage
            raise
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise StorageUnavailable(
                    f"{operation} failed: the object store is unreachable or full ({_reason(exc)}); retried for {patience:g} s (DISTILLERY_STORAGE_PATIENCE_S)"
                ) from exc
            log.warning("%s: the object store failed (%s); retrying in %.1f s", operation, _reason(exc), delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)


def store_artifacts(store: ObjectStore, prefix: str, artifacts: Sequence[ExportedFile]) -> list[tuple[ExportedFile, StoredObject]]:
    """Store every artifact under ``prefix``, or none: on failure what was stored is deleted and ``StorageUnavailable`` raised."""
    stored: list[tuple[ExportedFile, StoredObject]] = []
    try:
        for item in artifacts:
            key = f"{prefix}/{item.path.name}"
            stored.append((item, with_storage_retries(f"storing artifact {item.path.name}", partial(store.put_file, key, item.path))))
    except StorageUnavailable:
        try:
            store.delete_prefix(prefix)
        except Exception as exc:  # still failing: the objects stay orphaned, never listed
            log.warning("could not remove the %d artifact(s) stored before the failure under %s (%s)", len(stored), prefix, _reason(exc))
        raise
    return stored


def restore_intact_checkpoint(store: ObjectStore, job_id: str, work_dir: Path) -> CheckpointRow | None:
    """Put the newest stored checkpoint whose bytes match its recorded sha256 into the work folder; returns its row.

    A checkpoint already in the work folder is left to kdcore, which checks it against its own digest
    file; one gone from storage (or recorded as a local path before checkpoints were stored) is passed
    over, and with none left the attempt resumes from what the work folder holds.
    """
    with session_scope() as session:
        rows = list(session.scalars(select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.global_step.desc())))
    folder = work_dir / "checkpoints"
    for row in rows:
        target = folder / os.path.basename(row.storage_key)
        if target.exists():
            return row
        try:
            present = with_storage_retries(f"looking up checkpoint {row.public_id}", partial(store.exists, row.storage_key))
        except ValueError:  # a key that is no store key: a local path recorded before checkpoints were stored
            present = False
        if not present:
            log.warning("checkpoint %s (step %d) of %s cannot be fetched from storage; trying the one before it", row.public_id, row.global_step, job_id)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        fetched = with_storage_retries(f"fetching checkpoint {row.public_id}", partial(store.fetch, row.storage_key, target))
        if fetched != target:  # a local store hands out the object itself: the work folder gets its own copy
            shutil.copyfile(fetched, target)
        if sha256_file(target) == row.sha256:
            target.with_suffix(".sha256").write_text(row.sha256)
            return row
        log.warning("checkpoint %s (step %d) of %s does not match its recorded sha256; trying the one before it", row.public_id, row.global_step, job_id)
        target.unlink()
    return None
