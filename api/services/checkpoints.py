"""Checkpoints as resources: a job's list, and the student inside one as a safetensors download."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from api.errors import ApiError, not_found
from client.models import Checkpoint, CheckpointList
from core.checkpoints import job_checkpoints, tenant_checkpoint
from core.models import CheckpointRow
from core.storage import get_store


def checkpoint_out(row: CheckpointRow) -> Checkpoint:
    return Checkpoint(id=row.public_id, step=row.global_step, epoch=row.epoch, metrics=row.metrics or {}, size_bytes=row.size_bytes, created_at=row.created_at)


def list_checkpoints(session: Session, job_id: str) -> CheckpointList:
    return CheckpointList(items=[checkpoint_out(row) for row in job_checkpoints(session, job_id)])


def find_checkpoint(session: Session, tenant: str, checkpoint_id: str) -> CheckpointRow:
    found = tenant_checkpoint(session, tenant, checkpoint_id)
    if found is None:
        raise not_found("checkpoint", checkpoint_id)
    return found[0]


def student_file(row: CheckpointRow, folder: Path) -> Path:
    """Write the checkpoint's student into ``folder`` as the safetensors file a job's export would be (same metadata)."""
    from kdcore.checkpoint_student import write_checkpoint_student

    store = get_store()
    try:
        stored = store.exists(row.storage_key)
    except ValueError:  # a row written before checkpoints were stored: its key is a worker's local path
        stored = False
    if not stored:
        raise ApiError(404, f"checkpoint {row.public_id} is listed but its file is no longer stored; use a newer checkpoint of the job")
    return write_checkpoint_student(store.fetch(row.storage_key, folder / "checkpoint.pt"), folder / f"student-{row.public_id}.safetensors")
