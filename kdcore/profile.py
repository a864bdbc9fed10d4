"""What a model costs to run: multiply-accumulates and CPU latency, measured the same way for student and teacher.

These are the numbers that justify a distillation: the report sets them side by side. A latency is
the median of many timed calls after a warm-up, with the interquartile range around it, and says
when that range is too wide to trust (the machine was busy while it was measured).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

WARMUP_RUNS = 5  # TorchScript's profiling executor optimises the graph over the first calls
MIN_RUNS = 25
MIN_SECONDS = 0.25
MAX_SECONDS = 2.0  # a slow model stops here, with at least FLOOR_RUNS calls (and is flagged if under MIN_RUNS)
FLOOR_RUNS = 5
MAX_RUNS = 1000
NOISY_IQR = 0.5  # torch.utils.benchmark's threshold for "significant environmental influence": IQR above half the median


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int | None:
    """Multiply-accumulates for one image (FLOPs / 2 from PyTorch's flop counter); None if it cannot trace."""
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.rand(1, *input_size))
        return int(counter.get_total_flops() // 2)
    except Exception:
        return None


@dataclass(frozen=True)
class Latency:
    """Milliseconds per forward pass: the median of ``runs`` timed calls, and their 25th and 75th percentiles."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    runs: int

    @classmethod
    def of(cls, timings_ms: list[float]) -> Latency:
        p25, median, p75 = statistics.quantiles(timings_ms, n=4, method="inclusive")
        return cls(median, p25, p75, len(timings_ms))

    @property
    def noisy(self) -> bool:
        """Too spread (interquartile range above half the median) or too few runs to trust the median."""
        return self.runs < MIN_RUNS or self.p75_ms - self.p25_ms > NOISY_IQR * self.median_ms

    def metrics(self, name: str) -> dict[str, float]:
        """``name`` is the median; ``name_p25``/``name_p75`` the spread, ``name_noisy`` 1.0 when it should not be trusted."""
        return {name: self.median_ms, f"{name}_p25": self.p25_ms, f"{name}_p75": self.p75_ms, f"{name}_noisy": float(self.noisy)}


def cpu_latency(model: Callable[[Tensor], object], input_size: tuple[int, int, int], batch: int) -> Latency:
    """Time ``model`` on a random ``[batch, *input_size]`` CPU batch, call by call, after ``WARMUP_RUNS`` untimed calls."""
    sample = torch.rand(batch, *input_size)
    timings: list[float] = []
    with torch.inference_mode():
        for _ in range(WARMUP_RUNS):
            model(sample)
        started = time.perf_counter()
        while len(timings) < MAX_RUNS:
            begin = time.perf_counter()
            model(sample)
            end = time.perf_counter()
            timings.append((end - begin) * 1000.0)
            elapsed = end - started
            if (len(timings) >= MIN_RUNS and elapsed >= MIN_SECONDS) or (len(timings) >= FLOOR_RUNS and elapsed >= MAX_SECONDS):
                break
    return Latency.of(timings)
