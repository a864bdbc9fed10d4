"""kdcore callbacks that write to the database: batched metric points, progress, cancellation."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select, update

from api.db import session_scope
from api.models import CheckpointRow, JobEvent, JobRow
from api.storage import LocalStore, ObjectStore
from kdcore.checkpoint import sha256_file
from kdcore.events import MetricPoint, Progress, TrainCallbacks

FLUSH_EVERY_S = 1.0
CANCEL_POLL_S = 1.0


class DatabaseCallbacks(TrainCallbacks):
    def __init__(self, job_id: str, worker: str, store: ObjectStore, checkpoint_prefix: str) -> None:
        self.job_id = job_id
        self.worker = worker
        self.store = store
        self.checkpoint_prefix = checkpoint_prefix
        self.pending: list[MetricPoint] = []
        self.latest: dict[str, float] = {}
        self.progress: Progress | None = None
        self.last_flush = 0.0
        self.last_cancel_poll = 0.0
        self.cancelled = False

    def on_metrics(self, points: list[MetricPoint]) -> None:
        self.pending.extend(points)
        self.latest.update({p.name: p.value for p in points})
        self._maybe_flush()

    def on_progress(self, progress: Progress) -> None:
        self.progress = progress
        self._maybe_flush()

    def on_checkpoint(self, path: Path, global_step: int) -> None:
        key = f"{self.checkpoint_prefix}/{path.name}"
        if not isinstance(self.store, LocalStore):
            self.store.put_file(key, path)
        else:
            key = str(path)
        with session_scope() as session:
            session.add(CheckpointRow(job_id=self.job_id, global_step=global_step, storage_key=key, sha256=sha256_file(path)))
        self.flush()

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.last_cancel_poll >= CANCEL_POLL_S:
            self.last_cancel_poll = now
            with session_scope() as session:
                self.cancelled = bool(session.scalar(select(JobRow.cancel_requested).where(JobRow.id == self.job_id)))
        return self.cancelled

    def _maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        points, self.pending = self.pending, []
        values: dict = {}
        if self.progress is not None:
            p = self.progress
            values["progress"] = {"epoch": p.epoch, "epochs": p.epochs, "step": p.step, "steps": p.steps, "fraction": round(p.fraction, 4)}
        if self.latest:
            values["metrics"] = dict(self.latest)
        with session_scope() as session:
            session.add_all([JobEvent(job_id=self.job_id, kind="metric", name=p.name, step=p.step, epoch=p.epoch, value=p.value) for p in points])
            if values:
                session.execute(update(JobRow).where(JobRow.id == self.job_id, JobRow.status == "running", JobRow.worker == self.worker).values(**values))
