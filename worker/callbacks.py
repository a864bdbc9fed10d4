"""kdcore callbacks that write to the database: batched metric points, progress, cancellation.

Training never waits for the database: while it is unreachable (a restart, a failover) points and
checkpoint records stay buffered and go out with the next flush that works, and cancellation is
answered from the last known value. Only the writes that end an attempt wait, through
:func:`retry_db`. A poll that finds the job no longer running under this worker (the reaper gave
it to another) stops the attempt as if it were cancelled; its conditional writes then change nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from core.db import session_scope
from core.models import CheckpointRow, JobEvent, JobRow
from core.storage import LocalStore, ObjectStore
from kdcore.checkpoint import sha256_file
from kdcore.events import MetricPoint, Progress, TrainCallbacks

FLUSH_EVERY_S = 1.0
CANCEL_POLL_S = 1.0
DB_PATIENCE_S = 120.0
DB_UNREACHABLE = (OperationalError, InterfaceError)
T = TypeVar("T")
log = logging.getLogger("distillery.worker")


def _reason(exc: Exception) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def retry_db(action: Callable[[], T], what: str, patience_s: float = DB_PATIENCE_S) -> T:
    """Run ``action`` (one whole transaction), again with backoff while the database is unreachable."""
    deadline = time.monotonic() + patience_s
    delay = 0.2
    while True:
        try:
            return action()
        except DB_UNREACHABLE as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unreachable (%s); retrying in %.1f s", what, _reason(exc), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class DatabaseCallbacks(TrainCallbacks):
    def __init__(self, job_id: str, worker: str, store: ObjectStore, checkpoint_prefix: str) -> None:
        self.job_id = job_id
        self.worker = worker
        self.store = store
        self.checkpoint_prefix = checkpoint_prefix
        self.pending: list[MetricPoint] = []
        self.pending_checkpoints: list[tuple[int, str, str]] = []
        self.latest: dict[str, float] = {}
        self.progress: Progress | None = None
        self.last_flush = 0.0
        self.last_cancel_poll = 0.0
        self.cancelled = False
        self.lost = False

    def on_metrics(self, points: list[MetricPoint]) -> None:
        self.pending.extend(points)
        self.latest.update({p.name: p.value for p in points})
        self._maybe_flush()

    def on_progress(self, progress: Progress) -> None:
        """The first report goes out at once: it follows the step's metric points, whose flush just reset the clock."""
        first = self.progress is None
        self.progress = progress
        if first:
            self.flush(wait=False)
        else:
            self._maybe_flush()

    def on_checkpoint(self, path: Path, global_step: int) -> None:
        key = f"{self.checkpoint_prefix}/{path.name}"
        if not isinstance(self.store, LocalStore):
            self.store.put_file(key, path)
        else:
            key = str(path)
        self.pending_checkpoints.append((global_step, key, sha256_file(path)))
        self.flush(wait=False)

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not (self.cancelled or self.lost) and now - self.last_cancel_poll >= CANCEL_POLL_S:
            self.last_cancel_poll = now
            try:
                with session_scope() as session:
                    row = session.execute(select(JobRow.cancel_requested, JobRow.status, JobRow.worker).where(JobRow.id == self.job_id)).one_or_none()
            except DB_UNREACHABLE as exc:
                log.warning("cancel poll for %s: database unreachable (%s); asking again later", self.job_id, _reason(exc))
                return False
            self.cancelled = bool(row and row.cancel_requested)
            self.lost = row is None or row.status != "running" or row.worker != self.worker
            if self.lost:
                log.warning("job %s is no longer running under %s; stopping this attempt", self.job_id, self.worker)
        return self.cancelled or self.lost

    def _maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        """Write buffered points, checkpoint records and progress; ``wait`` retries until the database answers."""
        self.last_flush = time.monotonic()
        points, checkpoints = self.pending, self.pending_checkpoints
        self.pending, self.pending_checkpoints = [], []
        try:
            if wait:
                retry_db(lambda: self._write(points, checkpoints), f"flush for {self.job_id}")
            else:
                self._write(points, checkpoints)
        except DB_UNREACHABLE as exc:
            self.pending, self.pending_checkpoints = points + self.pending, checkpoints + self.pending_checkpoints
            if wait:
                raise
            log.warning("flush for %s: database unreachable (%s); keeping %d points for the next flush", self.job_id, _reason(exc), len(self.pending))

    def _write(self, points: list[MetricPoint], checkpoints: list[tuple[int, str, str]]) -> None:
        values: dict = {}
        if self.progress is not None:
            p = self.progress
            values["progress"] = {"epoch": p.epoch, "epochs": p.epochs, "step": p.step, "steps": p.steps, "fraction": round(p.fraction, 4)}
        if self.latest:
            values["metrics"] = dict(self.latest)
        with session_scope() as session:
            session.add_all([JobEvent(job_id=self.job_id, kind="metric", name=p.name, step=p.step, epoch=p.epoch, value=p.value) for p in points])
            session.add_all([CheckpointRow(job_id=self.job_id, global_step=step, storage_key=key, sha256=digest) for step, key, digest in checkpoints])
            if values:
                session.execute(update(JobRow).where(JobRow.id == self.job_id, JobRow.status == "running", JobRow.worker == self.worker).values(**values))
