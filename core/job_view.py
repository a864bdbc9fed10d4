"""A job row as the API shows it: the one mapping used by HTTP answers and webhook payloads alike."""

from __future__ import annotations

from datetime import datetime

from client.models import Job, JobError, JobProgress
from core.models import JobRow


def iso_time(value: datetime) -> str:
    """ISO 8601; naive database times are UTC and get a ``Z``."""
    text = value.isoformat()
    return text if value.tzinfo else text + "Z"


def job_out(job: JobRow) -> Job:
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
