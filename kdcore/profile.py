"""What a model costs to run: multiply-accumulates and CPU latency, measured the same way for student and teacher.

These are the numbers that justify a distillation: the report sets them side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int | None:
    """Multiply-accumulates for one image (FLOPs / 2 from PyTorch's flop counter); None if it cannot trace."""
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.rand(1, *input_size))
        return int(counter.get_total_flops() // 2)
    except Exception:
        return None


def cpu_latency_ms(model: Callable[[Tensor], Tensor], input_size: tuple[int, int, int], batch: int, repeats: int = 10) -> float:
    """Best wall-clock milliseconds of ``repeats`` forward passes at ``batch`` on CPU, after a warm-up run.

    The minimum, not the mean: on a shared machine other work only ever adds time.
    """
    sample = torch.rand(batch, *input_size)
    timings = []
    with torch.inference_mode():
        model(sample)
        for _ in range(repeats):
            started = time.perf_counter()
            model(sample)
            timings.append((time.perf_counter() - started) * 1000.0)
    return min(timings)
