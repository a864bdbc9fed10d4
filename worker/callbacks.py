"""kdcore callbacks that write to the database: batched metric points, progress, phases, checkpoints, cancel and pause.

Training never waits for the database: while it is unreachable (a restart, a failover) points and
checkpoint records stay buffered and go out with the next flush that works, and cancel and pause
requests are answered from the last known value. Only the writes that end an attempt wait, through
:func:`retry_db`. A poll that finds the job no longer held by this worker (the reaper gave it to
another) stops the attempt as if it were cancelled; its conditional writes then change nothing.
Every checkpoint goes to the object store (a resource users list and download); mid-epoch ones
are dropped once superseded (:mod:`core.checkpoints`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from core.checkpoints import superseded
from core.db import session_scope
from core.ids import new_id
from core.job_view import iso_time
from core.jobstate import WORKER_HELD
from core.models import CheckpointRow, JobEvent, JobRow, utcnow
from core.storage import ObjectStore
from kdcore.events import MetricPoint, Progress, TrainCallbacks
from worker.storage_writes import LocalFileGone, put_local_file, with_storage_retries

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
        self.pending_checkpoints: list[dict[str, Any]] = []
        self.pending_phases: list[tuple[str, datetime]] = []
        self.latest: dict[str, float] = {}
        self.phases: list[dict] = []
        self.last_checkpoint: dict[str, Any] | None = None
        self.progress: Progress | None = None
        self.last_flush = 0.0
        self.last_cancel_poll = 0.0
        self.cancelled = False
        self.pausing = False
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

    def on_checkpoint(self, path: Path, global_step: int, epoch: int, epoch_end: bool) -> None:
        key = f"{self.checkpoint_prefix}/{path.name}"
        try:
            stored = with_storage_retries(f"storing checkpoint {path.name} (step {global_step})", partial(put_local_file, self.store, key, path))
        except LocalFileGone:  # relayed from a Ray rank after the next checkpoint had already replaced and pruned it
            log.info("checkpoint %s (step %d) was superseded before it could be stored; the newer one is kept", path.name, global_step)
            return
        self.last_checkpoint = {
            "public_id": new_id("ckpt"),
            "global_step": global_step,
            "epoch": epoch,
            "epoch_end": epoch_end,
            "metrics": dict(self.latest),
            "size_bytes": stored.size_bytes,
            "storage_key": stored.key,
            "sha256": stored.sha256,
        }
        self.pending_checkpoints.append(self.last_checkpoint)
        self.flush(wait=False)

    def on_notice(self, name: str, message: str) -> None:
        """A few per job at most, so written at once in its own transaction; a database outage right then only logs it."""
        try:
            with session_scope() as session:
                session.add(JobEvent(job_id=self.job_id, kind="notice", name=name, data={"message": message}))
        except DB_UNREACHABLE as exc:
            log.warning("notice %s for %s not recorded, database unreachable (%s): %s", name, self.job_id, _reason(exc), message)

    def on_phase(self, name: str) -> None:
        if self.phase == name:
            return
        self._close_phase()
        now = utcnow()
        self.phases.append({"name": name, "started_at": iso_time(now), "finished_at": None})
        self.pending_phases.append((name, now))
        self.flush(wait=False)

    @property
    def phase(self) -> str | None:
        return self.phases[-1]["name"] if self.phases and self.phases[-1]["finished_at"] is None else None

    def _close_phase(self) -> None:
        if self.phase is not None:
            self.phases[-1]["finished_at"] = iso_time(utcnow())

    def end_phases(self) -> None:
        """The attempt is over: close the open phase and write everything still buffered."""
        self._close_phase()
        self.flush()

    def should_cancel(self) -> bool:
        self._poll()
        return self.cancelled or self.lost

    def should_pause(self) -> bool:
        self._poll()
        return self.pausing and not self.lost

    def _poll(self) -> None:
        """Read the cancel flag, the status and the owner at most every ``CANCEL_POLL_S``."""
        now = time.monotonic()
        if self.cancelled or self.lost or now - self.last_cancel_poll < CANCEL_POLL_S:
            return
        self.last_cancel_poll = now
        try:
            with session_scope() as session:
                row = session.execute(select(JobRow.cancel_requested, JobRow.status, JobRow.worker).where(JobRow.id == self.job_id)).one_or_none()
        except DB_UNREACHABLE as exc:
            log.warning("cancel poll for %s: database unreachable (%s); asking again later", self.job_id, _reason(exc))
            return
        self.cancelled = bool(row and row.cancel_requested)
        self.pausing = row is not None and row.status == "pausing"
        self.lost = row is None or row.status not in WORKER_HELD or row.worker != self.worker
        if self.lost:
            log.warning("job %s is no longer running under %s; stopping this attempt", self.job_id, self.worker)

    def _maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        """Write buffered points, checkpoint records and progress; ``wait`` retries until the database answers."""
        self.last_flush = time.monotonic()
        points, checkpoints, phases = self.pending, self.pending_checkpoints, self.pending_phases
        self.pending, self.pending_checkpoints, self.pending_phases = [], [], []
        try:
            if wait:
                retry_db(lambda: self._write(points, checkpoints, phases), f"flush for {self.job_id}")
            else:
                self._write(points, checkpoints, phases)
        except DB_UNREACHABLE as exc:
            self.pending, self.pending_checkpoints, self.pending_phases = (
                points + self.pending,
                checkpoints + self.pending_checkpoints,
                phases + self.pending_phases,
            )
            if wait:
                raise
            log.warning("flush for %s: database unreachable (%s); keeping %d points for the next flush", self.job_id, _reason(exc), len(self.pending))

    def _write(self, points: list[MetricPoint], checkpoints: list[dict[str, Any]], phases: list[tuple[str, datetime]]) -> None:
        values: dict[str, Any] = {"phase": self.phase, "phases": [dict(p) for p in self.phases]}
        if self.progress is not None:
            p = self.progress
            values["progress"] = {"epoch": p.epoch, "epochs": p.epochs, "step": p.step, "steps": p.steps, "fraction": round(p.fraction, 4)}
        if self.latest:
            values["metrics"] = dict(self.latest)
        dropped: list[str] = []
        with session_scope() as session:
            session.add_all([JobEvent(job_id=self.job_id, kind="metric", name=p.name, step=p.step, epoch=p.epoch, value=p.value) for p in points])
            session.add_all([JobEvent(job_id=self.job_id, kind="phase", name=name, time=at) for name, at in phases])
            session.add_all([CheckpointRow(job_id=self.job_id, **fields) for fields in checkpoints])
            session.execute(update(JobRow).where(JobRow.id == self.job_id, JobRow.status.in_(WORKER_HELD), JobRow.worker == self.worker).values(**values))
            if checkpoints:
                session.flush()
                for row in superseded(session, self.job_id):
                    dropped.append(row.storage_key)
                    session.delete(row)
        for key in dropped:
            try:
                self.store.delete_prefix(key)
            except Exception as exc:  # storage briefly failing: an orphaned object wastes space, a crashed job loses work
                log.warning("could not delete superseded checkpoint %s (%s); it stays stored", key, exc)
