"""A job row as the API shows it: the one mapping used by HTTP answers and webhook payloads alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from client.models import Job, JobError, JobProgress
from core.models import JobRow

# What ``job_out`` reads: pages and polls select these columns only, not whole rows (no worker,
# heartbeat or idempotency bookkeeping, no ORM objects to build).
JOB_VIEW_COLUMNS = (
    JobRow.id,
    JobRow.name,
    JobRow.method,
    JobRow.status,
    JobRow.spec,
    JobRow.progress,
    JobRow.metrics,
    JobRow.error_code,
    JobRow.error_message,
    JobRow.attempts,
    JobRow.cancel_requested,
    JobRow.phase,
    JobRow.phases,
    JobRow.created_at,
    JobRow.started_at,
    JobRow.finished_at,
)


def iso_time(value: datetime) -> str:
    """ISO 8601; naive database times are UTC and get a ``Z``."""
    text = value.isoformat()
    return text if value.tzinfo else text + "Z"


def job_out(job: JobRow | Row[Any]) -> Job:
    """From a whole row or from a row of ``JOB_VIEW_COLUMNS``."""
    error = JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return Job(
        id=job.id,
        name=job.name,
        method=job.method,
        status=job.status,
        spec=job.spec,
        progress=JobProgress(**(job.progress or {})),
        metrics=job.metrics or {},
        error=error,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        phase=job.phase,
        phases=job.phases or [],
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
