"""The loader worker processes of one job: forked once, as the data is opened, and kept for every epoch and evaluation.

Why once and early: a forked worker shares the trainer's memory copy-on-write, so every page that
either side writes afterwards exists twice. Forked before the model is built, the workers share
only the import-time heap. Forked again for every epoch and every evaluation (one DataLoader each),
they pinned a copy of whatever the trainer held at that moment. Measured on a 224 px ``test_vit``
job over 2,200 images (anonymous PSS of the job's processes): 1,110 MiB at its final evaluation
with a DataLoader per pass, 960 MiB with the pool, 886 MiB for the same job held in memory on a set
ten times smaller. Freezing the collector's objects as the workers fork (``gc.freeze``) keeps its
passes from copying every shared page: on the ``bench streaming`` jobs, 235 MiB above the in-memory
job without it, 131 MiB with it.

The pool is a ``torch.utils.data.DataLoader`` with persistent workers whose sampler is a list the
caller refills before each pass: a request names a split and carries everything the worker needs
(indices, and for training the epoch, step and position that seed the augmentation), so the
workers never need the batch plan and the plan may be made after they start. The DataLoader hands
requests to the workers round-robin and returns their results in request order.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kdcore.errors import BadDataset

PREFETCH_BATCHES = 4
View = Callable[..., dict[str, Any]]


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_FROM_BYTES = 1 << 20


def _start_worker(_: int) -> None:
    """One torch thread, and every block of 1 MiB or more (a batch of pixels) in its own mapping, returned to the system when freed.

    glibc otherwise raises its mmap threshold to the largest block freed so far, so after the first
    batch every batch lands on the heap, whose freed space is kept: measured on a 224 px job, the
    worker's private memory grew by one batch (9.6 MB) per evaluation request, to 189 MiB, against
    52 MiB with the fixed threshold.
    """
    torch.set_num_threads(1)
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc only; elsewhere the allocator keeps its own policy
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_FROM_BYTES)


def _fork_context():
    """Fork where the platform has it: workers share the trainer's pages instead of importing torch again (about 370 MB each)."""
    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


class _Requests(Sampler):
    def __init__(self) -> None:
        self.items: list[tuple] = []

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class _Router(Dataset):
    """``request`` = (view name, arguments…) → that view's batch; a sample that fails comes back as its message."""

    def __init__(self, views: dict[str, View]) -> None:
        self.views = views

    def __getitem__(self, request: tuple) -> dict[str, Any]:
        name, *arguments = request
        try:
            return self.views[name](*arguments)
        except BadDataset as exc:
            return {"error": exc.message}


class LoaderPool:
    def __init__(self, workers: int, pin_memory: bool = False) -> None:
        self.workers = workers
        self.pin_memory = pin_memory
        self.views: dict[str, View] = {}
        self.requests = _Requests()
        self.loader: DataLoader | None = None

    def add(self, name: str, view: View) -> None:
        """Register what requests named ``name`` run; only before the workers are forked (they keep what they inherited)."""
        if self.loader is not None:
            raise RuntimeError("the loader workers are already running; add every view before the first request")
        self.views[name] = view

    def start(self) -> None:
        """Fork the workers now (the first ``run`` would otherwise)."""
        if self.loader is not None:
            return
        self.loader = DataLoader(
            _Router(self.views),
            batch_size=None,
            sampler=self.requests,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            pin_memory=self.pin_memory,
            prefetch_factor=PREFETCH_BATCHES if self.workers else None,
            worker_init_fn=_start_worker if self.workers else None,
            multiprocessing_context=_fork_context() if self.workers else None,
            generator=torch.Generator(),  # the DataLoader draws a seed per pass; from torch's global stream it would shift the run's own draws
        )
        if self.workers:
            # Objects alive now move to the collector's permanent generation: its passes in the training process
            # would otherwise write to every object's header, so each page shared with the workers would be copied.
            gc.collect()
            gc.freeze()
            iter(self.loader)

    def run(self, requests: list[tuple]) -> Iterator[dict[str, Any]]:
        """The results of ``requests`` in order; a failed sample raises :class:`BadDataset` naming it."""
        self.start()
        assert self.loader is not None
        self.requests.items = requests
        for item in self.loader:
            if "error" in item:
                raise BadDataset(item["error"])
            yield item

    def close(self) -> None:
        """Stop the workers (they would otherwise live until the pool is garbage-collected or the process exits)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()  # DataLoader's own teardown of persistent workers
            gc.unfreeze()
        self.loader = None
