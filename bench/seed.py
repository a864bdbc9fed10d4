"""Make the benchmark's jobs look like finished ones: the metrics, progress and metric history a real job leaves.

Jobs submitted with no worker running stay ``queued`` with empty ``metrics``, which makes a list page
far lighter than one a user sees. This writes, straight into the deployment's database, what a
finished ``kd`` job carries (the final metrics dictionary, progress, start and end times) and a
history of metric points for one job, so ``GET /v1/jobs`` and ``GET …/events/list`` serve
realistic rows.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import make_engine
from core.models import JobEvent, JobRow, utcnow

FINAL_METRICS = {
    "train/loss": 0.412,
    "train/loss/kd": 0.301,
    "train/loss/ce": 0.111,
    "train/lr": 0.0,
    "val/top1": 99.17,
    "val/top5": 100.0,
    "val/loss": 0.041,
    "teacher/val/top1": 99.44,
    "teacher/val/top5": 100.0,
    "student/params": 78042.0,
    "teacher/params": 272474.0,
    "student/macs": 12_614_656.0,
    "teacher/macs": 41_216_000.0,
    "student/file_bytes": 320_112.0,
    "teacher/file_bytes": 1_101_984.0,
    "time/samples_per_second": 412.5,
    "job/resumed_from_step": 0.0,
}
PROGRESS = {"epoch": 20, "epochs": 20, "step": 460, "steps": 460, "fraction": 1.0}
HISTORY_NAMES = ("train/loss", "train/loss/kd", "train/loss/ce", "train/lr")


def finish_jobs(database_url: str, job_ids: list[str], history_job: str, history_points: int) -> None:
    """Mark ``job_ids`` succeeded with ``FINAL_METRICS``; give ``history_job`` ``history_points`` metric events."""
    engine = make_engine(database_url)
    started = utcnow() - timedelta(minutes=10)
    try:
        with Session(engine) as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id.in_(job_ids))
                .values(status="succeeded", metrics=FINAL_METRICS, progress=PROGRESS, attempts=1, started_at=started, finished_at=utcnow())
            )
            session.add_all(
                JobEvent(job_id=history_job, kind="metric", name=HISTORY_NAMES[i % len(HISTORY_NAMES)], step=10 * (i // 4), epoch=i // 92, value=1.0 / (i + 1))
                for i in range(history_points)
            )
            session.commit()
    finally:
        engine.dispose()
