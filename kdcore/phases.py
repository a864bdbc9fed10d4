"""Where a run's time goes: named phases, told to the caller as each starts and kept for the report.

``validating`` (data, teachers and student built and checked), ``teacher_outputs`` (the teacher
runs over the training set to fill its output cache), ``training``, ``exporting`` and
``evaluating`` (the exported student and the teachers scored and timed). The service adds
``publishing`` after kdcore returns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kdcore.events import TrainCallbacks


@dataclass
class PhaseSpan:
    name: str
    started: float
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished if self.finished is not None else time.time()) - self.started


class PhaseClock:
    """The run's phases in order; entering the phase already open changes nothing."""

    def __init__(self, callbacks: TrainCallbacks) -> None:
        self.callbacks = callbacks
        self.spans: list[PhaseSpan] = []

    @property
    def current(self) -> str | None:
        return self.spans[-1].name if self.spans and self.spans[-1].finished is None else None

    def enter(self, name: str) -> None:
        if self.current == name:
            return
        self.close()
        self.spans.append(PhaseSpan(name, time.time()))
        self.callbacks.on_phase(name)

    def close(self) -> None:
        if self.current is not None:
            self.spans[-1].finished = time.time()

    @contextmanager
    def during(self, name: str) -> Iterator[None]:
        """``name`` for the block, then back to the phase that was open (the teacher cache fills in the middle of training)."""
        previous = self.current
        self.enter(name)
        try:
            yield
        finally:
            if previous is not None:
                self.enter(previous)
