"""A job's steady speed: images per second over its last epoch of steps, read from its progress reports.

By the last epoch ``torch.compile`` has compiled, cuDNN has picked its kernels and the loader is
warm, so the rate is what the job sustains; validation and checkpoints fall between epochs, outside
the interval. The trainer reports progress (global step) after each epoch's last step and again
after the epoch's validation, so the last epoch runs from the last report at the previous epoch's
final step to the first report at the job's final step.
"""

from __future__ import annotations

import time

from kdcore.events import Progress, TrainCallbacks


class EpochClock(TrainCallbacks):
    def __init__(self) -> None:
        self.reports: list[tuple[float, int, int, int]] = []

    def on_progress(self, progress: Progress) -> None:
        self.reports.append((time.perf_counter(), progress.step, progress.steps, progress.epochs))

    def last_epoch_images_per_second(self, batch_size: int) -> float:
        total, epochs = self.reports[-1][2], self.reports[-1][3]
        per_epoch = total // epochs
        started = max(t for t, step, _, _ in self.reports if step == total - per_epoch)
        ended = min(t for t, step, _, _ in self.reports if step == total)
        return per_epoch * batch_size / (ended - started)
