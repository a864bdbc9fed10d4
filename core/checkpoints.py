"""A job's stored checkpoints: found by their public ID within a tenant, the newest, and which to keep.

Every epoch-end checkpoint is kept (each one a student users may download or start from); a
mid-epoch one only until a newer checkpoint exists, since it serves nothing but resuming.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import CheckpointRow, JobRow


def tenant_checkpoint(session: Session, tenant: str, public_id: str) -> tuple[CheckpointRow, JobRow] | None:
    """The checkpoint and its job, when the job belongs to ``tenant`` (another tenant's is not found either)."""
    found = session.execute(
        select(CheckpointRow, JobRow).join(JobRow, JobRow.id == CheckpointRow.job_id).where(CheckpointRow.public_id == public_id, JobRow.tenant_id == tenant)
    ).first()
    return (found[0], found[1]) if found is not None else None


def job_checkpoints(session: Session, job_id: str) -> list[CheckpointRow]:
    return list(session.scalars(select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.global_step, CheckpointRow.id)))


def newest_checkpoint(session: Session, job_id: str) -> CheckpointRow | None:
    return session.scalar(select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.global_step.desc()).limit(1))


def superseded(session: Session, job_id: str) -> list[CheckpointRow]:
    """Mid-epoch checkpoints older than the job's newest checkpoint: nothing resumes from them any more."""
    newest = newest_checkpoint(session, job_id)
    if newest is None:
        return []
    return list(
        session.scalars(
            select(CheckpointRow).where(CheckpointRow.job_id == job_id, CheckpointRow.epoch_end.is_(False), CheckpointRow.global_step < newest.global_step)
        )
    )
