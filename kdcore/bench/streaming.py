"""``streaming``: the data path of large sets. Two tables.

1. Decoded-and-augmented images/s per loader worker at 224 px from JPEG WebDataset shards
   (``imagenet`` recipe: decode, RandomResizedCrop to 224, flip), with 1 and 2 workers; the images
   are 320×256 JPEGs with photographic noise, so a decode costs about what a photo of that size does.
2. Training samples/s of the streamed path against the in-memory path on the same small set (digits
   at 32 px, ``cifar_resnet8``), with and without per-sample augmentation, in alternating rounds.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

from kdcore.bench.image_folders import digits_tree
from kdcore.bench.results import Section, met
from kdcore.data.loader_pool import LoaderPool
from kdcore.data.samples import SampleReader
from kdcore.data.shards import write_shards
from kdcore.data.stream import ShardedPlan, StreamedBatches, StreamedSplit
from kdcore.spec import JobSpec
from kdcore.training import train

SIDE = 224
BATCH = 64
TARGET_RATIO = 0.8
CPU = torch.device("cpu")


def _images_per_second(batches: StreamedBatches, epoch: int) -> float:
    started = time.perf_counter()
    seen = sum(len(batch.indices) for batch in batches.epoch(epoch))
    return seen / (time.perf_counter() - started)


def loader_section(work: Path, per_class: int = 128) -> Section:
    tree = digits_tree(work / "jpeg", size=(320, 256), per_class=per_class, val_per_class=2, image_format="JPEG", noise=24.0)
    index = write_shards(tree, work / "shards", shard_bytes=4 * 1024**2)
    index = index.model_copy(update={"base_uri": (work / "shards").as_uri()})
    section = Section(
        f"Loader: decoded + augmented images/s at {SIDE} px from JPEG shards (`imagenet` recipe, {index.counts()['train']} images of 320×256)",
        ["Loader workers", "images/s", "images/s per worker"],
    )
    rates: dict[int, float] = {}
    for workers in (0, 1, 2):
        pool = LoaderPool(workers)
        split = StreamedSplit(SampleReader(index, "train"), index.classes, (3, SIDE, SIDE), "imagenet", pool, "train")
        batches = StreamedBatches(split, ShardedPlan(split.labels, BATCH, 0, torch.from_numpy(split.reader.table.shard).long()), CPU)
        pool.start()
        try:
            rates[workers] = statistics.median(_images_per_second(batches, epoch) for epoch in range(3))
        finally:
            pool.close()
        label = "0 (in the training process)" if workers == 0 else str(workers)
        section.rows.append([label, f"{rates[workers]:.0f}", f"{rates[workers] / max(1, workers):.0f}"])
        print(f"[streaming] loader with {workers} workers: {rates[workers]:.0f} images/s", file=sys.stderr)
    per_worker = rates[1]
    section.notes.append("each rate is the median of 3 epochs, timed from the first batch requested to the last received; the workers are started before")
    section.notes.append(
        f"a GPU node needs loader workers per GPU ≈ the GPU's training images/s ÷ {per_worker:.0f}: e.g. a student trained at 2,000 images/s "
        f"per GPU needs about {max(1, round(2000 / per_worker))} workers (cores) per GPU on this CPU; on these 2 shared cores a second worker "
        "competes with the first and with the training process"
    )
    return section


def _job(work: Path, tree: Path, pipeline: str, augment: str) -> float:
    spec = JobSpec(
        method="supervised",
        student={"arch": "cifar_resnet8"},
        dataset={"root": tree},
        training={"epochs": 2, "batch_size": BATCH, "seed": 0, "input_size": [3, 32, 32], "augment": augment, "data_pipeline": pipeline, "loader_workers": 1},
        export=["safetensors"],
        work_dir=work,
    )
    result = train(spec)
    assert result.metrics["data/streamed"] == float(pipeline == "stream")
    return result.metrics["time/samples_per_second"]


def pipeline_section(work: Path, rounds: int = 2) -> Section:
    tree = digits_tree(work / "digits32", size=32)
    section = Section(
        f"Training samples/s: streamed against in-memory, same set (digits at 32 px, {sum(1 for _ in (tree / 'train').rglob('*.png'))} images, cifar_resnet8, batch {BATCH}, CPU)",
        ["augment", "in memory", "streamed (1 loader worker)", "Ratio", "Target", "Met"],
    )
    for augment in ("none", "cifar"):
        memory: list[float] = []
        streamed: list[float] = []
        for index in range(rounds):
            order = ("memory", "stream") if index % 2 == 0 else ("stream", "memory")
            for pipeline in order:
                (memory if pipeline == "memory" else streamed).append(_job(work / f"{augment}-{pipeline}-{index}", tree, pipeline, augment))
        ratio = statistics.median(s / m for s, m in zip(streamed, memory, strict=True))
        section.rows.append(
            [augment, f"{statistics.median(memory):.0f}", f"{statistics.median(streamed):.0f}", f"{ratio:.2f}", f"≥ {TARGET_RATIO}", met(ratio >= TARGET_RATIO)]
        )
        print(f"[streaming] augment {augment}: memory {memory}, streamed {streamed}", file=sys.stderr)
    section.notes.append(
        f"{rounds} rounds of 2 epochs per path in alternating order; samples/s is the trainer's own time/samples_per_second (steps only); "
        "in memory, `cifar` runs per sample in the training process, streamed it runs in the loader worker"
    )
    return section


def run(work: Path) -> list[Section]:
    return [loader_section(work / "loader"), pipeline_section(work / "pipeline")]
