"""``DELETE /v1/jobs/{id}`` and the cancel of an ended job: what may be deleted, and deleting it whole.

The row is deleted (its events, artifacts, checkpoints and webhook deliveries go with it by
cascade) in a transaction that stays open while the job's files are removed, and commits only once
they are gone: if storage fails, the job is still there and the answer (503) says to send the
DELETE again, so nothing is left half-deleted that the API would still list. The deletion is
conditional on the job having settled, so a job resumed or retried a moment earlier is refused,
not deleted under its new attempt. The tenant's storage usage (its quota) counts artifacts and
checkpoints from their rows, so it frees up with the commit.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.services.jobs import tenant_job
from core.config import Settings
from core.db import rows_matched
from core.jobstate import SETTLED, TERMINAL
from core.models import ArtifactRow, CheckpointRow, JobRow
from core.retention import remove_job_files, starts_from
from core.storage import get_store

log = logging.getLogger("distillery.api")


def refuse_cancel_of_ended(job: JobRow) -> None:
    if job.status in TERMINAL:
        raise ApiError(409, f"job {job.id} has already ended ({job.status}); there is nothing to cancel")


def _still_running(job_id: str, status: str) -> ApiError:
    return ApiError(409, f"job {job_id} is {status}; cancel it first (POST /v1/jobs/{job_id}/cancel), then delete it once it has ended")


def delete_job(session: Session, settings: Settings, tenant: str, job_id: str) -> None:
    job = tenant_job(session, tenant, job_id)
    if job.status not in SETTLED:
        raise _still_running(job_id, job.status)
    own = [
        *session.scalars(select(ArtifactRow.id).where(ArtifactRow.job_id == job_id)),
        *session.scalars(select(CheckpointRow.public_id).where(CheckpointRow.job_id == job_id)),
    ]
    users = starts_from(session, tenant, own)
    if users:
        used, user = next(iter(users.items()))
        raise ApiError(409, f"job {user} starts from this job's {used} (student.init) and has not ended; cancel it or wait for it, then delete this job")
    if rows_matched(session, delete(JobRow).where(JobRow.id == job_id, JobRow.status.in_(SETTLED))) != 1:
        session.rollback()
        raise _still_running(job_id, tenant_job(session, tenant, job_id).status)
    try:
        remove_job_files(get_store(), settings, tenant, job_id)
    except Exception as exc:
        session.rollback()
        log.warning("deleting job %s: storage failed (%s); the job was kept", job_id, exc)
        raise ApiError(
            503, f"the object store failed while deleting job {job_id}'s files ({type(exc).__name__}); the job was kept, send the DELETE again"
        ) from exc
    session.commit()
