"""Reaper and sweeper, run by every worker's main process on a timer.

* A running job whose heartbeat is older than ``DISTILLERY_HEARTBEAT_TIMEOUT_S`` lost its worker:
  it goes back to ``queued`` (attempts are counted when it is claimed again) and is re-sent, or
  fails with ``worker_lost`` after ``max_attempts``; a ``pausing`` one becomes ``paused``. This
  does not depend on the broker's visibility timeout.
* A queued job not picked up for ``DISTILLERY_REQUEUE_AFTER_S`` is re-sent unless the broker still
  holds a live message for it, so a message lost by a broker restart (or never sent because the
  broker was down) cannot strand a job, while a job that only waits its turn in a long queue is
  not sent again and again. Live means waiting in the queue, or handed to a worker less than
  ``DISTILLERY_REQUEUE_AFTER_S`` ago and not yet acknowledged (a worker claims what it is handed
  within seconds; an older unacknowledged message went to a worker that died). When the broker
  cannot be read the job is re-sent anyway: duplicates are harmless, only one claim can win.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import select, update

from core.config import get_settings
from core.db import session_scope
from core.jobstate import WORKER_HELD, transition
from core.models import JobRow, utcnow

log = logging.getLogger("distillery.worker.sweep")
_stop = threading.Event()
JOB_ID = re.compile(rb"job_[0-9a-f]+")
REDIS_UNACKED, REDIS_UNACKED_INDEX = "unacked", "unacked_index"  # kombu's Redis transport: messages handed out, and when


def _read_message(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:  # consumed while the folder was being listed
        return b""


def jobs_with_live_messages(handed_out_since: float) -> set[str] | None:
    """IDs of the jobs the broker holds a live message for; None when the broker cannot be read."""
    from core.celery_app import QUEUE, celery_app

    settings = get_settings()
    try:
        if settings.uses_embedded_broker:  # kombu's filesystem transport keeps only waiting messages on disk
            raw = [_read_message(path) for path in (settings.broker_folder / "queue").glob("*.msg")]
        else:
            with celery_app.connection_for_read() as connection:
                client = connection.default_channel.client
                tags = client.zrangebyscore(REDIS_UNACKED_INDEX, handed_out_since, "+inf")
                raw = [*client.lrange(QUEUE, 0, -1), *(m for m in (client.hmget(REDIS_UNACKED, tags) if tags else []) if m)]
    except Exception as exc:  # unreadable broker: the caller re-sends everything it doubts
        log.warning("cannot list the broker's messages (%s); re-sending every stale queued job", exc)
        return None
    return {found.decode() for item in raw for found in JOB_ID.findall(item if isinstance(item, bytes) else item.encode())}


def reap_and_requeue() -> list[str]:
    """One pass; returns the IDs it re-sent."""
    from core.celery_app import celery_app

    settings = get_settings()
    now = utcnow()
    resend: list[str] = []
    with session_scope() as session:
        stale = session.scalars(
            select(JobRow).where(JobRow.status.in_(WORKER_HELD), JobRow.heartbeat_at < now - timedelta(seconds=settings.heartbeat_timeout_s))
        ).all()
        for job in stale:
            if job.status == "pausing":  # it was asked to pause anyway: it resumes from its newest stored checkpoint
                transition(session, job.id, {"pausing"}, "paused", where={"worker": job.worker}, worker=None, detail={"reason": "worker_lost"})
            elif job.attempts >= job.max_attempts:
                transition(
                    session,
                    job.id,
                    {"running"},
                    "failed",
                    where={"worker": job.worker},
                    error_code="worker_lost",
                    error_message=f"the worker running this job stopped responding {job.attempts} times (max_attempts {job.max_attempts}); it was not retried again",
                )
            elif transition(
                session,
                job.id,
                {"running"},
                "queued",
                where={"worker": job.worker},
                worker=None,
                enqueued_at=now,
                detail={"reason": "worker_lost", "attempt": job.attempts},
            ):
                log.warning("job %s lost its worker (attempt %d); re-queued", job.id, job.attempts)
                resend.append(job.id)
        waiting = session.scalars(
            select(JobRow.id).where(JobRow.status == "queued", JobRow.enqueued_at < now - timedelta(seconds=settings.requeue_after_s))
        ).all()
        if waiting and (live := jobs_with_live_messages(time.time() - settings.requeue_after_s)) is not None:
            waiting = [job_id for job_id in waiting if job_id not in live]
        if waiting:
            session.execute(update(JobRow).where(JobRow.id.in_(waiting), JobRow.status == "queued").values(enqueued_at=now))
        resend += [job_id for job_id in waiting if job_id not in resend]
    for job_id in resend:
        celery_app.send_task("worker.run_job", args=[job_id])
    return resend


def _loop() -> None:
    interval = get_settings().reaper_interval_s
    while not _stop.wait(interval):
        try:
            reap_and_requeue()
        except Exception as exc:  # database or broker briefly down: try again next tick
            log.warning("sweep failed: %s", exc)


@worker_ready.connect
def _start(**_: object) -> None:
    threading.Thread(target=_loop, name="distillery-sweep", daemon=True).start()


@worker_shutdown.connect
def _stop_loop(**_: object) -> None:
    _stop.set()
