"""What running jobs say about their workers, read from the database for ``/metrics``: how old each
heartbeat is, and how many training samples per second each job is getting through right now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import JobEvent, JobRow, utcnow

RATE_WINDOW = timedelta(minutes=2)


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    worker: str
    heartbeat_age_s: float | None
    samples_per_second: float | None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _samples_per_second(session: Session, job: JobRow, now: datetime) -> float | None:
    """Steps between the oldest and newest ``train/loss`` points of the last two minutes, times the batch size."""
    points = session.execute(
        select(JobEvent.step, JobEvent.time)
        .where(JobEvent.job_id == job.id, JobEvent.kind == "metric", JobEvent.name == "train/loss", JobEvent.time >= now - RATE_WINDOW)
        .order_by(JobEvent.seq.desc())
        .limit(200)
    ).all()
    if len(points) < 2:
        return None
    (new_step, new_time), (old_step, old_time) = points[0], points[-1]
    seconds = (_aware(new_time) - _aware(old_time)).total_seconds()
    if seconds <= 0 or new_step is None or old_step is None or new_step <= old_step:
        return None
    batch_size = int((job.spec.get("training") or {}).get("batch_size") or 64)
    return (new_step - old_step) * batch_size / seconds


def running_jobs(session: Session) -> list[RunningJob]:
    now = utcnow()
    out = []
    for job in session.scalars(select(JobRow).where(JobRow.status == "running")):
        age = (now - _aware(job.heartbeat_at)).total_seconds() if job.heartbeat_at else None
        worker = ":".join((job.worker or "unknown").split(":")[:2])
        out.append(RunningJob(job.id, worker, age, _samples_per_second(session, job, now)))
    return out
