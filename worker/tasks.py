"""Celery tasks: another interface to the core logic. Pass IDs, re-fetch rows, call the runner."""

from __future__ import annotations

import gc
import multiprocessing

import sklearn.datasets  # noqa: F401  (built-in datasets and the model registry import these lazily: ~5 s per job if not preloaded)
import timm  # noqa: F401
import torch
import torchvision.models  # noqa: F401
from celery.exceptions import Ignore
from celery.signals import worker_process_init

# Import the training stack once in the worker's main process (no CUDA is touched here), so every
# forked job process starts with torch, timm and the methods already loaded.
import kdcore.training  # noqa: F401
import worker.logging_hooks  # noqa: F401  (JSON or text logs carrying job IDs)
import worker.webhooks  # noqa: F401  (starts the webhook dispatcher in the worker's main process)
from core.celery_app import celery_app
from core.db import get_engine
from core.jobstate import TERMINAL
from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info
from worker import sweep  # noqa: F401  (starts the reaper/sweeper in the worker's main process)
from worker.ended_jobs import tidy_ended_job
from worker.runner import JobRunner

# The main process forks every job process, so it runs torch on one thread: an OpenMP thread team
# started here (one parallel op is enough) is not in the forked child, whose first parallel op then
# waits on it forever. Each job process gets the machine's threads back as it starts.
JOB_THREADS = torch.get_num_threads()
torch.set_num_threads(1)

# Decode the built-in datasets here too (a few MB, on the one thread): a job on one would
# otherwise spend its first ~0.2 s loading and splitting it, and scikit-learn's lazy imports with it.
for _name in BUILTIN_DATASETS:
    builtin_info(_name)

# Every job process is forked from here and shares these objects copy-on-write. Frozen (kept out of the
# collector's passes), they stay shared: a full collection in a job process, such as the one before its
# loader workers fork, would otherwise write to every object's header and copy the whole inherited heap.
gc.collect()
gc.freeze()


@worker_process_init.connect
def _fresh_job_process(**_: object) -> None:
    """A forked job process must not share the parent's pooled database connections, trains on every thread, and may start
    processes of its own: Celery marks its pool processes daemonic, which forbids children, but a streamed job forks loader
    workers (they end with it: torch's DataLoader workers exit when their parent does)."""
    get_engine().dispose(close=False)
    torch.set_num_threads(JOB_THREADS)
    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]


@celery_app.task(name="worker.run_job", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(job_id: str) -> None:
    """One attempt; a job that ended cancelled is reported to Celery as ignored, so its log never says the task "succeeded"."""
    status = JobRunner(job_id).run()
    if status in TERMINAL:
        tidy_ended_job(job_id)
    if status == "cancelled":
        raise Ignore()
