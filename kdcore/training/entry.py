"""``train(spec, callbacks)``: the one entry point the worker, the CLI and researchers call.

Losses accumulate on the device and are read every ``log_every_steps`` (no per-step host sync);
checkpoints are written every ``checkpoint_every_steps`` and at each epoch end, and a run whose
work folder holds a checkpoint resumes from it exactly (batches depend only on seed, epoch, step).
The pieces live beside it in :mod:`kdcore.training`; ``from kdcore import train`` is this function.
"""

from __future__ import annotations

from typing import overload

from kdcore.distributed.world import World
from kdcore.estimate import estimate_run
from kdcore.events import MetricPoint, TrainCallbacks, TrainResult
from kdcore.phases import PhaseClock
from kdcore.spec import JobSpec
from kdcore.training.guard import RunGuard
from kdcore.training.run import prepare_run
from kdcore.training.trainer import Trainer

ESTIMATE_METRIC = "job/estimated_seconds"


@overload
def train(spec: JobSpec, callbacks: TrainCallbacks | None = None, world: None = None) -> TrainResult: ...


@overload
def train(spec: JobSpec, callbacks: TrainCallbacks | None, world: World) -> TrainResult | None: ...


def train(spec: JobSpec, callbacks: TrainCallbacks | None = None, world: World | None = None) -> TrainResult | None:
    """Train ``spec`` to the end (or resume it), evaluate, export; raise a ``KdError`` on user errors.

    As one rank of a multi-rank run (``world``), rank 0 alone returns the result (the others None),
    and the time limit is left to the launcher that stands over every rank
    (:mod:`kdcore.distributed.launch`), so that no rank stops alone.
    """
    callbacks = callbacks or TrainCallbacks()
    world = world or World()
    guard = RunGuard(callbacks, None if world.distributed else spec.training.time_limit_s)
    phases = PhaseClock(callbacks)
    phases.enter("validating")
    run = prepare_run(spec, guard, world, phases)
    try:
        estimate = estimate_run(run)
        if world.is_main:
            callbacks.on_notice("estimate", f"this job should take {estimate.describe()}")
            callbacks.on_metrics([MetricPoint(ESTIMATE_METRIC, 0, 1, estimate.seconds)])
        result = Trainer(run, callbacks, guard, phases).train()
    finally:
        run.data.close()  # the streamed splits' loader workers
    if result is not None:
        result.metrics[ESTIMATE_METRIC] = estimate.seconds
    return result
