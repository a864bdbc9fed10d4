"""One JSON shape for a job event, shared by the SSE stream and the paged event list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from core.job_view import iso_time
from core.models import JobEvent

# What ``event_payload`` reads: pages select these columns, not whole ORM rows.
EVENT_COLUMNS = (JobEvent.seq, JobEvent.kind, JobEvent.name, JobEvent.step, JobEvent.epoch, JobEvent.value, JobEvent.data, JobEvent.time)


def event_payload(event: JobEvent | Row[Any]) -> dict[str, Any]:
    if event.kind == "status":
        return {"seq": event.seq, "type": "status", "status": event.name, "time": iso_time(event.time), "detail": event.data}
    if event.kind == "phase":  # the worker started a phase: validating, teacher_outputs, training, evaluating, exporting or publishing
        return {"seq": event.seq, "type": "phase", "name": event.name, "time": iso_time(event.time)}
    if event.kind in ("registry", "notice"):  # registry: the MLflow hand-off (registered or failed); notice: the run tells why it chose something
        return {"seq": event.seq, "type": event.kind, "name": event.name, "time": iso_time(event.time), "detail": event.data}
    return {
        "seq": event.seq,
        "type": "metric",
        "name": event.name,
        "step": event.step,
        "epoch": event.epoch,
        "value": event.value,
        "time": iso_time(event.time),
    }


def events_page(session: Session, job_id: str, after: int, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Events with ``seq > after`` in order; the cursor is the last seq returned when more are waiting."""
    rows = session.execute(select(*EVENT_COLUMNS).where(JobEvent.job_id == job_id, JobEvent.seq > after).order_by(JobEvent.seq).limit(limit + 1)).all()
    items = [event_payload(r) for r in rows[:limit]]
    return items, (str(items[-1]["seq"]) if len(rows) > limit else None)
