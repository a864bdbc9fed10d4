"""Job status changes as conditional updates: the database is the source of truth.

``queued → running → succeeded | failed | cancelled`` (and ``running → queued`` when a worker is
lost). An update names the state it expects; if another process got there first, nothing changes
and the caller learns it from the return value. Terminal states never change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.models import JobEvent, JobRow, utcnow
from core.webhooks import queue_webhook

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE = frozenset({"queued", "running"})


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
    anything the caller staged with it, such as artifact rows) and returns False.
    """
    if expected & TERMINAL:
        raise ValueError(f"a job in {sorted(expected & TERMINAL)} has ended; terminal states never change")
    if new_status in TERMINAL:
        values.setdefault("finished_at", utcnow())
    statement = update(JobRow).where(JobRow.id == job_id, JobRow.status.in_(expected))
    for column, value in (where or {}).items():
        statement = statement.where(getattr(JobRow, column) == value)
    result = session.execute(statement.values(status=new_status, **values).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        session.rollback()
        return False
    session.add(JobEvent(job_id=job_id, kind="status", name=new_status, data=detail or None))
    if new_status in TERMINAL:
        queue_webhook(session, job_id, new_status)
    session.commit()
    return True


def heartbeat(session: Session, job_id: str, worker: str, at: datetime | None = None) -> bool:
    """Record that ``worker`` still runs the job; False if the job is no longer running there."""
    result = session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == "running", JobRow.worker == worker)
        .values(heartbeat_at=at or utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1
