"""``train(spec, callbacks)``: the one entry point the worker, the CLI and researchers call.

Losses accumulate on the device and are read every ``log_every_steps`` (no per-step host sync);
checkpoints are written every ``checkpoint_every_steps`` and at each epoch end, and a run whose
work folder holds a checkpoint resumes from it exactly (batches depend only on seed, epoch, step).
The pieces live in :mod:`kdcore.training`.
"""

from __future__ import annotations

from kdcore.events import TrainCallbacks, TrainResult
from kdcore.phases import PhaseClock
from kdcore.spec import JobSpec
from kdcore.training import RunGuard, Trainer, prepare_run


def train(spec: JobSpec, callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Train ``spec`` to the end (or resume it), evaluate, export; raise a ``KdError`` on user errors."""
    callbacks = callbacks or TrainCallbacks()
    guard = RunGuard(callbacks, spec.training.time_limit_s)
    phases = PhaseClock(callbacks)
    phases.enter("validating")
    return Trainer(prepare_run(spec, guard, phases), callbacks, guard, phases).train()
