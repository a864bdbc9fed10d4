"""Checkpoints of a run and resuming from them exactly.

A checkpoint holds everything the next step depends on: the distiller's own weights (never the
teachers'), optimizer, schedule, grad scaler, the method's extra state, the CPU random stream and
the position in training. Batches depend only on (seed, epoch, step), so a resumed run takes the
same steps, bit for bit, as one that was never interrupted. It also describes its student (the
export's metadata), so any checkpoint's student can be exported (:mod:`kdcore.checkpoint_student`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdcore.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from kdcore.distributed.rank_streams import gather_rng_states, restore_rng_state
from kdcore.events import MetricPoint
from kdcore.export import describe_student
from kdcore.methods import Distiller
from kdcore.training.run import TrainingRun


@dataclass
class ResumeState:
    """Where training stands: the next step to take and the metrics reported so far."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    history: list[MetricPoint] = field(default_factory=list)


def checkpoint_dir(run: TrainingRun) -> Path:
    return Path(run.spec.work_dir) / "checkpoints"


def checkpoint_state(run: TrainingRun, position: ResumeState) -> dict[str, Any]:
    distiller = run.distiller
    return {
        "distiller": {k: v for k, v in distiller.state_dict().items() if not k.startswith("teachers.")},
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "method_state": distiller.method_state(),
        "epoch": position.epoch,
        "step": position.step,
        "global_step": position.global_step,
        "rng_cpu": torch.get_rng_state(),
        "history": [[p.name, p.step, p.epoch, p.value, p.time] for p in position.history],
        "student": describe_student(distiller.student, run.spec.student.arch, run.data.num_classes, run.data.input_size, run.spec.student.arch_kwargs),
    }


def fitting_state(distiller: Distiller, saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` without the rank-local buffers whose shape follows the per-rank batch (a resume at another world size rebuilds them)."""
    own = distiller.state_dict()
    local = set(distiller.rank_local_buffers)
    return {k: v for k, v in saved.items() if k not in local or own[k].shape == v.shape}


def save_run(run: TrainingRun, position: ResumeState) -> Path | None:
    """Write a checkpoint atomically; returns its path (None on ranks other than 0, which only hand over their random streams)."""
    rank_streams = gather_rng_states(run.world)
    if not run.world.is_main:
        return None
    state = checkpoint_state(run, position)
    if rank_streams is not None:
        state["rng_cpu_ranks"] = rank_streams
    return save_checkpoint(checkpoint_dir(run), position.global_step, state)


def resume_run(run: TrainingRun) -> ResumeState:
    """Load the newest intact checkpoint into the run's objects; a fresh start when there is none."""
    latest = latest_checkpoint(checkpoint_dir(run))
    if latest is None:
        return ResumeState()
    state = load_checkpoint(latest)
    run.distiller.load_state_dict(fitting_state(run.distiller, state["distiller"]), strict=False)
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    if run.scaler is not None and state["scaler"] is not None:
        run.scaler.load_state_dict(state["scaler"])
    run.distiller.load_method_state(state["method_state"])
    restore_rng_state(state, run.world, run.spec.training.seed)
    history = [MetricPoint(*row) for row in state.get("history", [])]
    return ResumeState(state["epoch"], state["step"], state["global_step"], history)
