"""One attempt at one job: claim it, train it with kdcore, publish what it made, record how it ended.

Every status write is conditional on this worker still owning the job, so a worker that was
declared lost (and whose job now runs elsewhere) cannot overwrite the newer attempt. The writes that
start and end an attempt ride out a database restart (:func:`worker.callbacks.retry_db`). A paused
attempt ends ``paused`` after kdcore wrote its checkpoint; the next attempt resumes from it.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import traceback
from datetime import datetime

from core.config import get_settings
from core.db import session_scope
from core.ids import new_id
from core.job_view import iso_time
from core.jobstate import WORKER_HELD, heartbeat, transition
from core.models import ArtifactRow, JobRow, utcnow
from core.queue import enqueue_job
from core.storage import get_store
from kdcore.errors import Cancelled, KdError, Paused, RankFailed
from worker.callbacks import DatabaseCallbacks, retry_db
from worker.mlflow_handoff import hand_off_to_registry
from worker.spec_builder import build_job_spec, job_work_dir
from worker.storage_writes import restore_intact_checkpoint, store_artifacts

log = logging.getLogger("distillery.worker")


class Heartbeat(threading.Thread):
    """Writes ``heartbeat_at`` every few seconds while the attempt runs, even inside long evaluations."""

    def __init__(self, job_id: str, worker: str, interval: float) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.worker, self.interval = job_id, worker, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with session_scope() as session:
                    heartbeat(session, self.job_id, self.worker)
            except Exception as exc:  # database briefly unreachable: the next beat retries
                log.warning("heartbeat for %s failed: %s", self.job_id, exc)


class JobRunner:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{new_id('att')}"
        self.settings = get_settings()
        self.store = get_store()
        self.callbacks: DatabaseCallbacks | None = None

    def claim(self) -> bool:
        return retry_db(self._claim_once, f"claim {self.job_id}")

    def _claim_once(self) -> bool:
        with session_scope() as session:
            job = session.get(JobRow, self.job_id)
            if job is None or job.status != "queued":
                return False
            if job.cancel_requested:
                transition(session, self.job_id, {"queued"}, "cancelled", error_code="cancelled", error_message="cancelled before it started")
                return False
            return transition(
                session,
                self.job_id,
                {"queued"},
                "running",
                worker=self.worker,
                attempts=JobRow.attempts + 1,
                heartbeat_at=utcnow(),
                started_at=job.started_at or utcnow(),
                detail={"attempt": job.attempts + 1},
            )

    def run(self) -> str | None:
        """Run one attempt; returns the status this attempt left the job in (None when it was not claimed or not ours to end)."""
        if not self.claim():
            log.info("job %s is not claimable here (already running elsewhere, finished, paused or cancelled)", self.job_id)
            return None
        beat = Heartbeat(self.job_id, self.worker, self.settings.heartbeat_interval_s)
        beat.start()
        try:
            return self._train_and_publish()
        except Paused:
            return self._pause()
        except Cancelled:
            return self._end("cancelled", "cancelled", "cancelled by request while running; no student was published")
        except RankFailed as exc:
            return self._resume_later(exc)
        except KdError as exc:
            return self._end("failed", exc.code, exc.message)
        except Exception as exc:
            log.error("job %s crashed:\n%s", self.job_id, traceback.format_exc())
            return self._end("failed", "internal", f"an internal error stopped the job ({type(exc).__name__}: {str(exc)[:300]}); this is a bug")
        finally:
            beat.stopped.set()

    def _train_and_publish(self) -> str | None:
        from kdcore.distributed.launch import launch

        def load_row():
            with session_scope() as session:
                job = session.get_one(JobRow, self.job_id)
                return job.tenant_id, dict(job.metrics or {}), _closed_phases(job.phases or [], job.heartbeat_at)

        tenant, previous_metrics, phases = retry_db(load_row, f"load {self.job_id}")
        callbacks = self.callbacks = DatabaseCallbacks(self.job_id, self.worker, self.store, f"tenants/{tenant}/jobs/{self.job_id}/checkpoints")
        callbacks.latest.update(previous_metrics)
        callbacks.phases = phases
        callbacks.on_phase("validating")

        def load_spec():
            with session_scope() as session:
                return build_job_spec(session, self.settings, self.store, session.get_one(JobRow, self.job_id))

        spec = retry_db(load_spec, f"load {self.job_id}")
        self._restore_checkpoint(spec.work_dir)
        result = launch(spec, callbacks, self.settings.ray_address)
        callbacks.flush()
        if callbacks.should_cancel():
            raise Cancelled("cancelled")
        callbacks.on_phase("publishing")
        return self._publish(tenant, result, callbacks.latest)

    def _restore_checkpoint(self, work_dir) -> None:
        """When the work folder lacks the newest stored checkpoint (a fresh machine, a cleaned folder), bring back the newest intact one so the attempt resumes."""
        restore_intact_checkpoint(self.store, self.job_id, work_dir)

    def _publish(self, tenant: str, result, latest: dict[str, float]) -> str | None:
        prefix = f"tenants/{tenant}/jobs/{self.job_id}/artifacts"
        stored = store_artifacts(self.store, prefix, result.artifacts)
        metrics = {**latest, **result.metrics, "job/resumed_from_step": float(result.resumed_from_step)}

        def record() -> bool:
            with session_scope() as session:
                session.add_all(
                    [
                        ArtifactRow(
                            id=new_id("art"),
                            job_id=self.job_id,
                            tenant_id=tenant,
                            kind=item.kind,
                            filename=item.path.name,
                            size_bytes=obj.size_bytes,
                            sha256=obj.sha256,
                            storage_key=obj.key,
                            meta=item.metadata,
                        )
                        for item, obj in stored
                    ]
                )
                session.flush()
                return transition(
                    session,
                    self.job_id,
                    WORKER_HELD,
                    "succeeded",
                    where={"worker": self.worker, "cancel_requested": False},
                    metrics=metrics,
                    progress=_done_progress(session, self.job_id),
                )

        self._end_phases()
        outcome = "succeeded" if retry_db(record, f"publish {self.job_id}") else self._settle_refused_success(prefix)
        if outcome == "succeeded":
            hand_off_to_registry(self.job_id, result.artifacts, self.settings)  # only when the job asked; records its own outcome, never raises
            shutil.rmtree(job_work_dir(self.settings, self.job_id), ignore_errors=True)
        return outcome

    def _settle_refused_success(self, prefix: str) -> str | None:
        """The success write changed nothing: a retried commit that had gone through, a cancel meanwhile, or the job is no longer ours."""

        def state():
            with session_scope() as session:
                job = session.get_one(JobRow, self.job_id)
                return job.status, job.worker, job.cancel_requested

        status, worker, cancel_requested = retry_db(state, f"read {self.job_id}")
        if worker == self.worker and status == "succeeded":
            return "succeeded"
        if worker == self.worker and status in WORKER_HELD and cancel_requested:
            self.store.delete_prefix(prefix)
            return self._end("cancelled", "cancelled", "cancelled by request while finishing; no student was published")
        log.warning("job %s: %s no longer owns it (status %s, worker %s); publishing nothing", self.job_id, self.worker, status, worker)
        return None

    def _end_phases(self) -> None:
        if self.callbacks is not None:
            self.callbacks.end_phases()

    def _pause(self) -> str | None:
        """kdcore stopped at a step boundary after writing a checkpoint: free this worker, unless a cancel came in meanwhile."""
        self._end_phases()
        last = self.callbacks.last_checkpoint if self.callbacks is not None else None
        detail = {"step": last["global_step"], "checkpoint": last["public_id"]} if last is not None else None

        def write() -> bool:
            with session_scope() as session:
                return transition(
                    session, self.job_id, {"pausing"}, "paused", where={"worker": self.worker, "cancel_requested": False}, worker=None, detail=detail
                )

        if retry_db(write, f"pause {self.job_id}"):
            log.info("job %s paused at checkpoint %s", self.job_id, detail)
            return "paused"
        return self._end("cancelled", "cancelled", "cancelled by request while pausing; no student was published")

    def _resume_later(self, exc: RankFailed) -> str | None:
        """A rank died: end this attempt and queue the job again, to resume from its newest checkpoint, while attempts remain."""

        def requeue() -> bool:
            with session_scope() as session:
                job = session.get_one(JobRow, self.job_id)
                if job.attempts >= job.max_attempts:
                    return False
                detail = {"reason": exc.code, "attempt": job.attempts}
                return transition(session, self.job_id, WORKER_HELD, "queued", where={"worker": self.worker}, worker=None, enqueued_at=utcnow(), detail=detail)

        self._end_phases()
        if not retry_db(requeue, f"requeue {self.job_id}"):
            return self._end("failed", exc.code, exc.message)
        log.warning("job %s: %s; queued again to resume from its checkpoint", self.job_id, exc.message.splitlines()[0])
        enqueue_job(self.job_id)
        return "queued"

    def _end(self, status: str, code: str, message: str) -> str | None:
        self._end_phases()

        def write() -> bool:
            with session_scope() as session:
                return transition(session, self.job_id, WORKER_HELD, status, where={"worker": self.worker}, error_code=code, error_message=message)

        if retry_db(write, f"end {self.job_id}"):
            log.info("job %s ended %s (%s): %s", self.job_id, status, code, message)
            return status
        log.info("job %s was not ended %s here: it is no longer running under %s", self.job_id, status, self.worker)
        return None


def _closed_phases(phases: list[dict], last_seen: datetime | None) -> list[dict]:
    """A previous attempt's phases, its open one closed when its worker was last seen (it died without closing it)."""
    closed = [dict(p) for p in phases]
    if closed and closed[-1].get("finished_at") is None:
        closed[-1]["finished_at"] = iso_time(last_seen or utcnow())
    return closed


def _done_progress(session, job_id: str) -> dict:
    job = session.get(JobRow, job_id)
    progress = dict(job.progress or {})
    progress.update(fraction=1.0, step=progress.get("steps", progress.get("step", 0)), epoch=progress.get("epochs", progress.get("epoch", 0)))
    return progress
