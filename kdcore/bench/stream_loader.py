"""The streamed loader's images/s at 224 px, against what the GPU consumes (part of ``make bench-gpu``).

A folder of JPEGs about the size of a typical ImageNet file (digits upscaled, with photographic
noise: :func:`~kdcore.bench.image_folders.digits_tree`) is written once, then opened the way a job
opens a set too large for memory (``data_pipeline: stream``, the ``imagenet`` recipe: decode at full
size, RandomResizedCrop to 224, flip, in loader worker processes, pinned and copied to the device)
and one epoch of batches is drawn without training. The first batch, which waits for the workers
to start, is left out. The loader keeps a GPU busy only if its rate is at least what the 224 px
job consumed in the same run.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from kdcore.bench.image_folders import digits_tree
from kdcore.bench.results import Section, met
from kdcore.data.loader import BatchPlan
from kdcore.data.pipeline import open_splits, training_batches
from kdcore.data.stream import default_loader_workers
from kdcore.spec import DatasetSource, TrainingConfig

INPUT_SIZE = (3, 224, 224)
STORED_SIZE = (400, 350)  # width × height of the JPEGs: about ImageNet's average file
PER_CLASS, CLASSES, NOISE = 128, 10, 24.0
BATCH = 128


def measure_loader(work: Path, device: str) -> tuple[float, int]:
    """Images per second over one epoch after its first batch, and the loader workers used."""
    config = TrainingConfig(epochs=1, data_pipeline="stream", augment="imagenet", input_size=INPUT_SIZE, batch_size=BATCH, device=device)
    root = work / "jpegs"
    if not (root / "val").exists():
        digits_tree(root, size=STORED_SIZE, per_class=PER_CLASS, val_per_class=2, image_format="JPEG", noise=NOISE)
    opened = open_splits(DatasetSource(root=root), config, INPUT_SIZE, True, work / "job")
    assert opened.train is not None  # open_splits was asked for the train split
    batches = training_batches(opened.train, BatchPlan(opened.train.labels, BATCH, config.seed), torch.device(device), config)
    started, images = 0.0, 0
    for step, batch in enumerate(batches.epoch(0)):
        if step == 0:
            started = time.perf_counter()
        else:
            images += len(batch.labels)
    if device == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - started), default_loader_workers()


def run(work: Path, device: str, consumed: float | None) -> Section:
    """``consumed``: the images/s the 224 px job trained at on this device (``None`` without a GPU figure)."""
    rate, workers = measure_loader(work, device)
    print(f"[stream] {rate:.0f} images/s at 224 px with {workers} loader workers on {device}", file=sys.stderr)
    section = Section(
        f"Streamed loader at {INPUT_SIZE[1]} px vs what the GPU consumes",
        ["Loader", "Workers", "Device", "Images/s", "GPU job consumes", "Loader / GPU", "Keeps the GPU busy"],
    )
    gpu = ("—", "—", "— (no CUDA device: no GPU figure)") if consumed is None else (f"{consumed:.0f}", f"{rate / consumed:.2f}", met(rate >= consumed))
    section.rows.append([f"stream, `imagenet` recipe, batch {BATCH}", str(workers), device, f"{rate:.0f}", *gpu])
    section.notes.append(
        f"{PER_CLASS * CLASSES} JPEGs of {STORED_SIZE[0]}×{STORED_SIZE[1]} decoded, RandomResizedCrop to {INPUT_SIZE[1]}, flipped and copied to the device, "
        f"one epoch after its first batch; {workers} loader worker processes (one core left to training) of {os.cpu_count()} cores; "
        "GPU job consumes: the resnet50 → resnet18 mixed-precision job's images/s in the table above"
    )
    return section
