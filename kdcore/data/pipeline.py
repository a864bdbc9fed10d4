"""Which path a job's data takes: held in memory, decoded once (the fast path), or streamed through loader workers.

``training.data_pipeline: auto`` holds a set in memory when its decoded size at the job's input
size (train + val, C·H·W bytes an image) is at most ``dataset.memory_max_bytes`` (the service's
``DISTILLERY_INMEMORY_MAX_BYTES``, 2 GiB by default), and streams it otherwise; ``memory`` and
``stream`` force either. Built-in sets are always in memory. The decision depends only on the
dataset, the input size and the budget, so a resumed attempt takes the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kdcore.data import load_split
from kdcore.data.catalog import index_local_tree
from kdcore.data.imagefolder import scan
from kdcore.data.images import ImageSet
from kdcore.data.index import DatasetIndex
from kdcore.data.loader import BatchPlan, TrainingBatches
from kdcore.data.loader_pool import LoaderPool
from kdcore.data.recipes import train_ops
from kdcore.data.samples import SampleReader
from kdcore.data.shard_cache import ShardCache
from kdcore.data.stream import WINDOW_SHARDS, ShardedPlan, StreamedBatches, StreamedSplit, default_loader_workers
from kdcore.errors import BadSpec
from kdcore.runtime import resolve_runtime
from kdcore.spec import DatasetSource, TrainingConfig

Split = ImageSet | StreamedSplit
PER_SAMPLE_RECIPES = ("cifar", "imagenet")  # in memory, flip_crop runs batched on the device; these run per sample on the CPU


@dataclass
class OpenedData:
    """The splits; ``pool`` holds the loader workers of streamed ones (``close`` stops them)."""

    train: Split | None
    val: Split
    streamed: bool
    pool: LoaderPool | None = None


def decoded_bytes(counts: Sequence[int], input_size: Sequence[int]) -> int:
    channels, height, width = (int(v) for v in input_size)
    return sum(counts) * channels * height * width


def choose_streamed(pipeline: str, size: int, budget: int) -> bool:
    return pipeline == "stream" or (pipeline == "auto" and size > budget)


def _reader(source: DatasetSource, index: DatasetIndex, split: str, work_dir: Path) -> SampleReader:
    cache = ShardCache(source.shard_cache or Path(work_dir) / "shard-cache", source.shard_cache_max_bytes, source.s3_endpoint_url)
    return SampleReader(index, split, cache, source.s3_endpoint_url)


def held_in_memory(split: StreamedSplit) -> ImageSet:
    """Decode every sample of ``split`` once, through its pool's workers, into one uint8 tensor."""
    channels, height, width = split.input_size
    images = torch.empty((len(split), channels, height, width), dtype=torch.uint8)
    requests = [(split.name, torch.arange(start, min(start + 256, len(split))), False) for start in range(0, len(split), 256)]
    for item in split.pool.run(requests):
        images[item["indices"]] = item["images"]
    return ImageSet(images, split.labels.clone(), split.classes)


def open_splits(source: DatasetSource, config: TrainingConfig, input_size: tuple[int, int, int], need_train: bool, work_dir: Path) -> OpenedData:
    """The job's train split (``None`` for data-free methods) and val split, in memory or streamed."""
    splits = ("train", "val") if need_train else ("val",)
    if source.builtin is not None:
        if config.data_pipeline == "stream":
            raise BadSpec(
                f"built-in dataset {source.builtin!r} is always held in memory; training.data_pipeline 'stream' needs an uploaded or registered dataset"
            )
        loaded = {s: load_split(source, s, input_size, config.augment if s == "val" else "none") for s in splits}
        return OpenedData(loaded.get("train"), loaded["val"], streamed=False)
    index = DatasetIndex.read(source.index) if source.index is not None else None
    counts = index.counts() if index is not None else {s: len(v) for s, v in scan(Path(source.root or ".")).items()}
    streamed = choose_streamed(config.data_pipeline, decoded_bytes([counts[s] for s in splits], input_size), source.memory_max_bytes)
    if not streamed and index is None:
        loaded = {s: load_split(source, s, input_size, config.augment if s == "val" else "none") for s in splits}
        return OpenedData(loaded.get("train"), loaded["val"], streamed=False)
    index = index or index_local_tree(Path(source.root or "."))
    workers = config.loader_workers if config.loader_workers is not None else default_loader_workers()
    pool = LoaderPool(workers, pin_memory=resolve_runtime(config).device.type == "cuda" and streamed)
    opened: dict[str, StreamedSplit] = {}
    for split in splits:
        recipe = config.augment if split == "val" or streamed else "none"
        opened[split] = StreamedSplit(_reader(source, index, split, work_dir), index.classes, input_size, recipe, pool, split)
    if streamed:
        pool.start()  # now, before the model exists: see kdcore.data.loader_pool
        return OpenedData(opened.get("train"), opened["val"], streamed, pool)
    try:
        held = {name: held_in_memory(split) for name, split in opened.items()}
    finally:
        pool.close()
    return OpenedData(held.get("train"), held["val"], streamed)


def batch_plan(plan: BatchPlan, train: Split, method_name: str) -> BatchPlan:
    """The method's plan, except on streamed shards: there the shard-window plan, which a method with its own plan cannot use."""
    if not isinstance(train, StreamedSplit) or train.reader.whole_objects:
        return plan
    if type(plan) is not BatchPlan:
        raise BadSpec(
            f"method {method_name!r} draws its own batches from the whole set, which sharded streaming cannot serve; "
            "use training.data_pipeline 'memory' or register the set as an imagefolder"
        )
    return ShardedPlan(plan.labels, plan.batch_size, plan.seed, torch.from_numpy(train.reader.table.shard.astype("int64")), WINDOW_SHARDS)


def teacher_reuse_off(config: TrainingConfig, streamed: bool) -> str | None:
    """Why teacher outputs cannot be reused for this job (said in a notice), or ``None`` when they can."""
    if streamed:
        return (
            "teacher outputs are not reused on the streamed path: each view is drawn fresh in a loader worker and nothing is kept per sample, "
            "so the teacher runs on every step"
        )
    if config.augment in PER_SAMPLE_RECIPES:
        return f"teacher outputs are not reused with augment {config.augment!r}: every view is drawn fresh, so the teacher runs on every step"
    return None


def training_batches(train: Split, plan: BatchPlan, device: torch.device, config: TrainingConfig, rank: int = 0, world_size: int = 1):
    """``TrainingBatches`` for a set in memory, ``StreamedBatches`` for a streamed one."""
    if isinstance(train, StreamedSplit):
        return StreamedBatches(train, plan, device, rank, world_size)
    per_sample = train_ops(config.augment, train.images.shape[1:]) if config.augment in PER_SAMPLE_RECIPES else None
    return TrainingBatches(train, plan, device, config.augment == "flip_crop", rank, world_size, per_sample)
