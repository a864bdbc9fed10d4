"""What the benchmarks train on: the built-in digits at a chosen size, and teachers made in seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from kdcore.data import load_split
from kdcore.data.images import ImageSet
from kdcore.models import create_model
from kdcore.spec import DatasetSource, JobSpec
from kdcore.training import train

DIGITS = {"builtin": "digits"}
NUM_CLASSES = 10


def digits(split: str, input_size: tuple[int, int, int]) -> ImageSet:
    """The same decoded split a job loads (one in-memory copy per process and size)."""
    return load_split(DatasetSource(**DIGITS), split, input_size)


def teacher_source(path: Path, arch: str, input_size: tuple[int, int, int]) -> dict:
    return {"path": str(path), "format": "safetensors", "arch": arch, "num_classes": NUM_CLASSES, "input_size": list(input_size)}


def random_teacher(folder: Path, arch: str, input_size: tuple[int, int, int], seed: int = 0) -> dict:
    """An untrained teacher: throughput does not depend on the weights, and it costs nothing to make."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=NUM_CLASSES, in_chans=input_size[0])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}-random-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return teacher_source(path, arch, input_size)


def trained_teacher(folder: Path, arch: str, input_size: tuple[int, int, int], epochs: int, seed: int) -> tuple[dict, float]:
    """A teacher trained with ``supervised`` through kdcore itself; returns its source and val top-1."""
    spec = JobSpec(
        method="supervised",
        student={"arch": arch},
        dataset=DIGITS,
        export=["safetensors"],
        work_dir=folder / f"{arch}-{seed}",
        training={"epochs": epochs, "batch_size": 64, "lr": 0.05, "seed": seed, "input_size": list(input_size), "augment": "none"},
    )
    result = train(spec)
    return teacher_source(result.artifacts[0].path, arch, input_size), result.metrics["val/top1"]
