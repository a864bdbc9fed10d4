"""What a job keeps in storage once it has ended, and where everything it stored lies.

While a job runs it keeps every epoch's checkpoint (a student users may download or start from).
Once it has ended only its newest ``DISTILLERY_KEEP_CHECKPOINTS`` stay, so storage stops growing
with every run: the newest is what a retry of a failed job resumes from. A checkpoint that another
job of the tenant, not yet ended, names as its ``student.init`` is kept whatever its age, since that
job still has to read it. Deleting a job removes the one storage prefix all its objects live under
(artifacts and checkpoints) and its work folder, where kdcore keeps its teacher-output store unless
``KDCORE_TEACHER_STORE`` points at a shared one (shared stores are content-addressed and not the
job's to delete).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.jobstate import ACTIVE
from core.models import CheckpointRow, JobRow
from core.storage import ObjectStore

log = logging.getLogger("distillery.retention")


def job_storage_prefix(tenant: str, job_id: str) -> str:
    return f"tenants/{tenant}/jobs/{job_id}"


def starts_from(session: Session, tenant: str, ids: Iterable[str]) -> dict[str, str]:
    """Which of ``ids`` (artifact or checkpoint IDs) a not-yet-ended job of the tenant starts from: ID → that job."""
    wanted = set(ids)
    if not wanted:
        return {}
    active = session.execute(select(JobRow.id, JobRow.spec).where(JobRow.tenant_id == tenant, JobRow.status.in_(ACTIVE))).all()
    return {init: job_id for job_id, spec in active if (init := ((spec or {}).get("student") or {}).get("init")) in wanted}


def prune_checkpoints(session: Session, store: ObjectStore, job_id: str, keep: int) -> int:
    """Delete all but the newest ``keep`` checkpoints of an ended job (rows and objects); returns how many went."""
    job = session.get(JobRow, job_id)
    if job is None or job.status in ACTIVE:
        return 0
    rows = list(
        session.scalars(select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.global_step.desc(), CheckpointRow.id.desc()))
    )
    older = rows[keep:]
    in_use = starts_from(session, job.tenant_id, [row.public_id for row in older])
    doomed = [row for row in older if row.public_id not in in_use]
    for row in doomed:
        session.delete(row)
    session.commit()
    for row in doomed:  # rows first: a checkpoint listed but missing is worse than an object nothing lists
        try:
            store.delete_prefix(row.storage_key)
        except Exception as exc:  # storage failing now leaves an orphaned object, never a broken job
            log.warning("could not delete pruned checkpoint %s of %s (%s); it stays stored", row.storage_key, job_id, exc)
    return len(doomed)


def remove_job_files(store: ObjectStore, settings: Settings, tenant: str, job_id: str) -> None:
    """Everything the job stored: its objects (artifacts, checkpoints) and its work folder on this machine; raises if storage fails."""
    store.delete_prefix(job_storage_prefix(tenant, job_id))
    shutil.rmtree(settings.work_dir / job_id, ignore_errors=True)
