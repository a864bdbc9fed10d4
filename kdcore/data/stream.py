"""The streamed path: batches decoded and augmented in ``torch.utils.data`` worker processes, never the whole set in memory.

What a step trains on is fixed before any worker starts: the plan's global batch of sample
indices for (seed, epoch, step). Workers only turn indices into pixels. The DataLoader hands step
numbers to its workers round-robin and returns their batches in step order, so the result does not
depend on the number of workers, and resuming at (epoch, step) is a sampler that starts at ``step``:
a resumed run sees exactly the remaining batches of an uninterrupted one.

On sharded data the epoch's order is :class:`ShardedPlan`'s: shards in a seeded order, then the
samples of each window of ``window_shards`` consecutive shards shuffled together (an in-buffer
shuffle whose buffer is the window), so at any time workers read from a few shards only.

Data parallel: rank ``r`` of ``world_size`` takes its slice (``tensor_split``) of every global
batch; a sample's augmentation is seeded by its position in the global batch, so the union of the
ranks' slices is the single-device batch.

Workers are forked (they inherit the reader and the epoch's plan without pickling), run one torch
thread each, and return uint8 tensors (4x less to pass between processes than float); on CUDA the
DataLoader pins them so the copy to the device overlaps the step.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from kdcore.data.augment import seeded_generator
from kdcore.data.loader import Batch, BatchPlan
from kdcore.data.recipes import augment_samples, decode_size, eval_ops, train_ops
from kdcore.data.samples import SampleReader
from kdcore.errors import BadDataset

PREFETCH_BATCHES = 4
WINDOW_SHARDS = 4
SHARD_ORDER_STREAM, WINDOW_STREAM = 6, 7


def default_loader_workers() -> int:
    """One core stays with the training process; at most 8 workers (``training.loader_workers`` overrides)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


class ShardedPlan(BatchPlan):
    """Epoch order = seeded shard order, then a seeded shuffle inside each window of ``window_shards`` shards."""

    def __init__(self, labels: Tensor, batch_size: int, seed: int, shard_of: Tensor, window_shards: int = WINDOW_SHARDS) -> None:
        super().__init__(labels, batch_size, seed)
        self.window_shards = window_shards
        counts = torch.bincount(shard_of).tolist() if len(shard_of) else []
        self.members = list(torch.argsort(shard_of, stable=True).split(counts))

    def order(self, epoch: int) -> Tensor:
        shards = torch.randperm(len(self.members), generator=seeded_generator(self.seed, epoch, SHARD_ORDER_STREAM)).tolist()
        windows = []
        for start in range(0, len(shards), self.window_shards):
            members = torch.cat([self.members[s] for s in shards[start : start + self.window_shards]])
            windows.append(members[torch.randperm(len(members), generator=seeded_generator(self.seed, epoch, start, WINDOW_STREAM))])
        return torch.cat(windows) if windows else torch.zeros(0, dtype=torch.long)


class _StepBatches(Dataset):
    """Item ``step`` = the samples ``batches[step]`` (which start at ``firsts[step]`` in their global batch), decoded and augmented, or the error met."""

    def __init__(self, split: StreamedSplit, batches: Sequence[Tensor], firsts: Sequence[int], train: bool, seed: int, epoch: int) -> None:
        self.split, self.batches, self.firsts, self.train = split, batches, firsts, train
        self.seed, self.epoch = seed, epoch
        self.ops = train_ops(split.recipe, split.input_size) if train else eval_ops(split.recipe, split.input_size)
        self.size = decode_size(split.recipe, split.input_size) if train or self.ops is None else None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> dict[str, Tensor | str]:
        indices = self.batches[step]
        reader, channels = self.split.reader, self.split.input_size[0]
        try:
            images = [reader.decode(i, channels, self.size) for i in indices.tolist()]
        except BadDataset as exc:
            return {"error": exc.message}
        if self.ops is None:
            stacked = torch.stack(images)
        elif self.train:
            stacked = augment_samples(images, self.ops, self.seed, self.epoch, step, self.firsts[step])
        else:
            stacked = torch.stack([self.ops(image) for image in images])
        return {"images": stacked, "labels": self.split.labels[indices], "indices": indices}


class StreamedSplit:
    """A split read through loader workers: what :class:`~kdcore.data.images.ImageSet` is for the in-memory path."""

    def __init__(self, reader: SampleReader, classes: list[str], input_size: Sequence[int], recipe: str, workers: int) -> None:
        self.reader = reader
        self.classes = classes
        self.input_size = tuple(int(v) for v in input_size)
        self.recipe = recipe
        self.workers = workers
        self.labels = torch.from_numpy(reader.table.label)

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def loader(
        self, batches: Sequence[Tensor], start_step: int, device: torch.device, train: bool, seed: int = 0, epoch: int = 0, firsts: Sequence[int] | None = None
    ) -> Iterator[dict]:
        """The decoded batches ``start_step`` … end, in order; a sample that fails raises :class:`BadDataset` naming it."""
        dataset = _StepBatches(self, batches, firsts or [0] * len(batches), train, seed, epoch)
        workers = self.workers if len(batches) - start_step > 1 else 0
        loader = DataLoader(
            dataset,
            batch_size=None,
            sampler=range(start_step, len(batches)),
            num_workers=workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=PREFETCH_BATCHES if workers else None,
            worker_init_fn=_one_thread if workers else None,
            multiprocessing_context=_fork_context() if workers else None,
        )
        for item in loader:
            if "error" in item:
                raise BadDataset(item["error"])
            yield item

    def evaluation_batches(self, batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        """The split in stored order (shard after shard), through the recipe's evaluation view."""
        batches = [torch.arange(start, min(start + batch_size, len(self))) for start in range(0, len(self), batch_size)]
        for item in self.loader(batches, 0, device, train=False):
            yield item["images"].to(device, non_blocking=True).float().div_(255.0), item["labels"].to(device, non_blocking=True)


def _fork_context():
    """Fork where the platform has it: workers share the trainer's pages copy-on-write instead of re-importing torch."""
    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


class StreamedBatches:
    """The training batches of any epoch from a :class:`StreamedSplit`, the streamed twin of ``TrainingBatches``."""

    def __init__(self, data: StreamedSplit, plan: BatchPlan, device: torch.device, rank: int = 0, world_size: int = 1) -> None:
        self.data = data
        self.plan = plan
        self.device = device
        self.rank = rank
        self.world_size = world_size

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        batches, firsts = self.plan.batches(epoch), None
        if self.world_size > 1:
            shares = [self.plan.rank_positions(len(b), self.rank, self.world_size) for b in batches]
            batches, firsts = [b[p] for b, p in zip(batches, shares, strict=True)], [int(p[0]) for p in shares]
        for item in self.data.loader(batches, start_step, self.device, True, self.plan.seed, epoch, firsts):
            images = item["images"].to(self.device, non_blocking=True).float().div_(255.0)
            yield Batch(images, item["labels"].to(self.device, non_blocking=True), item["indices"], None, epoch)
