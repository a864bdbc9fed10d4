"""Pause, resume and retry: the owner's lifecycle requests, each one conditional update (``core.jobstate``).

A request that does not fit the job's status answers 409 naming that status, so a client never
has to guess why nothing happened.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.errors import ApiError
from core.config import Settings
from core.jobstate import reopen_failed, transition
from core.models import JobRow, utcnow
from core.queue import enqueue_job


def does_not_fit(job: JobRow, action: str, fits: str) -> ApiError:
    return ApiError(409, f"job {job.id} is {job.status}; {action} applies only to a {fits} job")


def pause_job(session: Session, job: JobRow) -> JobRow:
    """A queued job pauses at once; a running one is asked to, and is ``paused`` once its worker has written a checkpoint."""
    if not (
        transition(session, job.id, {"queued"}, "paused", detail={"reason": "paused before a worker took it"})
        or transition(session, job.id, {"running"}, "pausing", where={"cancel_requested": False})
    ):
        session.refresh(job)
        raise does_not_fit(job, "pause", "queued or running (and not being cancelled)")
    session.refresh(job)
    return job


def resume_job(session: Session, job: JobRow) -> JobRow:
    """Queue a paused job again; the attempt that claims it starts from the newest checkpoint.

    The worker-loss budget (``max_attempts``) grows by one, so pausing never uses it up.
    """
    if not transition(session, job.id, {"paused"}, "queued", enqueued_at=utcnow(), max_attempts=JobRow.max_attempts + 1, detail={"reason": "resumed"}):
        session.refresh(job)
        raise does_not_fit(job, "resume", "paused")
    enqueue_job(job.id)
    session.refresh(job)
    return job


def retry_job(session: Session, settings: Settings, job: JobRow) -> JobRow:
    """Queue a failed job again as a new attempt, from its newest checkpoint, with a fresh worker-loss budget."""
    if not reopen_failed(session, job.id, enqueued_at=utcnow(), max_attempts=JobRow.attempts + settings.max_attempts, detail={"reason": "retried"}):
        session.refresh(job)
        raise does_not_fit(job, "retry", "failed")
    enqueue_job(job.id)
    session.refresh(job)
    return job
