"""Celery tasks: another interface to the core logic. Pass IDs, re-fetch rows, call the runner."""

from __future__ import annotations

from worker.celery_app import celery_app
from worker import sweep  # noqa: F401  (starts the reaper/sweeper in the worker's main process)


@celery_app.task(name="worker.run_job", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(job_id: str) -> None:
    from worker.runner import JobRunner

    JobRunner(job_id).run()
