"""What the training loop reports to its caller: metric points, progress, phases, checkpoints, and the final result.

Epochs are 1-based wherever they are reported (a point of the first epoch says ``epoch=1``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from kdcore.export import ExportedFile


@dataclass
class MetricPoint:
    """One value at ``step`` (global steps taken so far) in ``epoch`` (1-based)."""

    name: str
    step: int
    epoch: int
    value: float
    time: float = field(default_factory=time.time)


@dataclass
class Progress:
    epoch: int
    epochs: int
    step: int
    steps: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.steps))


@dataclass
class TrainResult:
    metrics: dict[str, float]
    artifacts: list[ExportedFile]
    resumed_from_step: int = 0


class TrainCallbacks:
    """Hooks the caller implements; defaults do nothing, so the CLI can pass none."""

    def on_progress(self, progress: Progress) -> None:
        """Called every few steps and at each epoch end."""

    def on_metrics(self, points: list[MetricPoint]) -> None:
        """Called with batches of points, never per step."""

    def on_checkpoint(self, path: Path, global_step: int, epoch: int, epoch_end: bool) -> None:
        """Called after a checkpoint file is durably written: after ``global_step`` steps, in ``epoch`` (1-based);
        ``epoch_end`` when it closes that epoch (its validation metrics already reported)."""

    def on_phase(self, name: str) -> None:
        """Called when the run starts a phase: ``validating``, ``teacher_outputs``, ``training``, ``evaluating``, ``exporting``."""

    def on_notice(self, name: str, message: str) -> None:
        """Called when the run decides something the user should know about (e.g. ``teacher_cache``: why reuse is off)."""

    def should_cancel(self) -> bool:
        """Polled every step; implementations should answer from memory and refresh rarely."""
        return False

    def should_pause(self) -> bool:
        """Polled every step, after ``should_cancel``; True makes the run checkpoint and raise ``kdcore.errors.Paused``."""
        return False
