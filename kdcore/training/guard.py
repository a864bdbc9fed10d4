"""Stops a run the caller cancelled or that ran past ``training.time_limit_s``, saying where it stopped."""

from __future__ import annotations

import time

from kdcore.errors import Cancelled, TimeLimitExceeded
from kdcore.events import TrainCallbacks


class RunGuard:
    """Asked between units of work (a step, a batch of teacher outputs); the clock starts with the job."""

    def __init__(self, callbacks: TrainCallbacks, time_limit_s: float | None) -> None:
        self.callbacks = callbacks
        self.time_limit_s = time_limit_s
        self.started = time.monotonic()

    def check(self, where: str) -> None:
        """Raise ``Cancelled`` or ``TimeLimitExceeded``; ``where`` completes "the job ran past its time limit … <where>"."""
        if self.callbacks.should_cancel():
            raise Cancelled("the job was cancelled")
        if self.time_limit_s is not None and time.monotonic() - self.started > self.time_limit_s:
            raise TimeLimitExceeded(f"the job ran past its time limit of {self.time_limit_s:.0f} s {where}; raise training.time_limit_s or lower epochs")
