"""Hand a committed job to the broker by task name, so the API never imports training code."""

from __future__ import annotations

import logging

log = logging.getLogger("distillery.api")


def enqueue_job(job_id: str) -> bool:
    """Send ``worker.run_job``; if the broker is down the job stays queued and the worker sweep re-sends it."""
    from core.celery_app import celery_app

    try:
        celery_app.send_task("worker.run_job", args=[job_id])
    except Exception as exc:  # broker unreachable: the row is committed, the sweep will enqueue it
        log.warning("could not enqueue %s now (%s); the sweep will retry", job_id, exc)
        return False
    return True
