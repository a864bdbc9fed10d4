"""Job status changes as conditional updates: the database is the source of truth.

``queued → running → succeeded | failed | cancelled`` (and ``running → queued`` when a worker is
lost). Pausing: ``running → pausing → paused`` (the worker writes a checkpoint at the next step
boundary and lets go), a ``queued`` job pauses at once, and ``paused → queued`` resumes. An update
names the state it expects; if another process got there first, nothing changes and the caller
learns it from the return value. Terminal states never change, with one explicit exception:
:func:`reopen_failed`, the owner's retry of a failed job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Update, delete, update
from sqlalchemy.orm import Session

from core.db import rows_matched
from core.models import JobEvent, JobRow, WebhookDelivery, utcnow
from core.webhooks import queue_webhook

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
WORKER_HELD = frozenset({"running", "pausing"})  # a worker owns the job and writes its progress
ACTIVE = frozenset({"queued", *WORKER_HELD, "paused"})  # not ended: its teachers and dataset stay in use
SETTLED = TERMINAL | {"paused"}  # no worker will change it until someone asks


def _apply(session: Session, statement: Update, job_id: str, new_status: str, detail: dict[str, Any] | None) -> bool:
    if rows_matched(session, statement.execution_options(synchronize_session=False)) != 1:
        session.rollback()
        return False
    session.add(JobEvent(job_id=job_id, kind="status", name=new_status, data=detail or None))
    if new_status in TERMINAL:
        queue_webhook(session, job_id, new_status)
    session.commit()
    return True


def transition(
    session: Session,
    job_id: str,
    expected: set[str] | frozenset[str],
    new_status: str,
    *,
    where: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Set ``status = new_status`` (and ``values``) only if the job is in ``expected``.

    Commits with a status event when it changed; otherwise rolls the session back (discarding
    anything the caller staged with it, such as artifact rows) and returns False. A job no worker
    holds has no ``phase``.
    """
    if expected & TERMINAL:
        raise ValueError(f"a job in {sorted(expected & TERMINAL)} has ended; terminal states never change")
    if new_status in TERMINAL:
        values.setdefault("finished_at", utcnow())
    if new_status not in WORKER_HELD:
        values.setdefault("phase", None)
    statement = update(JobRow).where(JobRow.id == job_id, JobRow.status.in_(expected))
    for column, value in (where or {}).items():
        statement = statement.where(getattr(JobRow, column) == value)
    return _apply(session, statement.values(status=new_status, **values), job_id, new_status, detail)


def reopen_failed(session: Session, job_id: str, *, detail: dict[str, Any] | None = None, **values: Any) -> bool:
    """``failed → queued``, on the owner's request only: no worker or reaper ever revives a job.

    The job keeps its ID, history and checkpoints; the next claim is a new attempt. Its
    ``job.failed`` webhook delivery is dropped with the failure it announced, so a second failure
    queues a fresh one.
    """
    statement = (
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == "failed")
        .values(status="queued", finished_at=None, error_code=None, error_message=None, cancel_requested=False, worker=None, **values)
    )
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id == job_id, WebhookDelivery.event == "job.failed"))
    return _apply(session, statement, job_id, "queued", detail)


def heartbeat(session: Session, job_id: str, worker: str, at: datetime | None = None) -> bool:
    """Record that ``worker`` still runs the job; False if the job is no longer running there."""
    matched = rows_matched(
        session,
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status.in_(WORKER_HELD), JobRow.worker == worker)
        .values(heartbeat_at=at or utcnow())
        .execution_options(synchronize_session=False),
    )
    session.commit()
    return matched == 1
