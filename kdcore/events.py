"""What the training loop reports to its caller: metric points, progress, and the final result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from kdcore.export import ExportedFile


@dataclass
class MetricPoint:
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

    def on_checkpoint(self, path: Path, global_step: int) -> None:
        """Called after a checkpoint file is durably written."""

    def should_cancel(self) -> bool:
        """Polled every step; implementations should answer from memory and refresh rarely."""
        return False
