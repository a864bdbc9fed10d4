"""From a step's named losses to reported metric points, with one host sync per log interval.

A method's ``forward`` returns ``loss``, ``loss/<part>`` and ``signal/<name>`` tensors; they are
summed on the device and averaged when read, so logging every ``log_every_steps`` costs one sync.
Names as reported: ``train/loss``, ``train/loss/<part>``, ``method/<name>``, ``train/lr``, ``val/*``; the
trainer passes 1-based epochs to the point builders.
"""

from __future__ import annotations

import math

from torch import Tensor

from kdcore.errors import NanLoss
from kdcore.evaluate import Accuracy
from kdcore.events import MetricPoint, TrainCallbacks


class RunningLosses:
    """Device-side sums of the logged entries of each step's output since the last read."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, output: dict[str, Tensor]) -> None:
        for key, value in output.items():
            if key == "loss" or key.startswith(("loss/", "signal/")):
                self.sums[key] = self.sums.get(key, 0) + value.detach().float()
        self.count += 1

    def read(self) -> dict[str, float]:
        """Means since the last read (the host sync), then start again."""
        means = {k: float(v) / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


def check_finite(values: dict[str, float], global_step: int, epoch: int) -> None:
    if not all(math.isfinite(v) for v in values.values()):
        raise NanLoss(f"the loss became NaN or infinite near step {global_step} (epoch {epoch + 1}); lower training.lr or check the teacher")


def reported_name(key: str) -> str:
    if key == "loss":
        return "train/loss"
    return "train/" + key if key.startswith("loss/") else key.replace("signal/", "method/")


def training_points(values: dict[str, float], lr: float, signals: dict[str, float], global_step: int, epoch: int) -> list[MetricPoint]:
    points = [MetricPoint(reported_name(k), global_step, epoch, v) for k, v in values.items()]
    points.append(MetricPoint("train/lr", global_step, epoch, lr))
    points += [MetricPoint(f"method/{k}", global_step, epoch, v) for k, v in signals.items()]
    return points


def validation_points(accuracy: Accuracy, global_step: int, epoch: int) -> list[MetricPoint]:
    return [
        MetricPoint("val/top1", global_step, epoch, accuracy.top1),
        MetricPoint("val/top5", global_step, epoch, accuracy.top5),
        MetricPoint("val/loss", global_step, epoch, accuracy.loss),
    ]


class MetricLog:
    """Every point reported in the run (checkpointed, so a resumed job's history is whole), passed on to the caller."""

    def __init__(self, callbacks: TrainCallbacks, history: list[MetricPoint]) -> None:
        self.callbacks = callbacks
        self.history = history

    def report(self, points: list[MetricPoint]) -> None:
        self.history.extend(points)
        self.callbacks.on_metrics(points)
