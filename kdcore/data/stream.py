"""The streamed path: batches decoded and augmented in ``torch.utils.data`` worker processes, never the whole set in memory.

What a step trains on is fixed before any worker sees it: the plan's global batch of sample
indices for (seed, epoch, step), made in the training process and sent with the request. Workers
(:class:`~kdcore.data.loader_pool.LoaderPool`, forked once per job) only turn indices into pixels,
and results come back in request order, so batches do not depend on the number of workers, and
resuming at (epoch, step) is asking from ``step`` on: a resumed run sees exactly the remaining
batches of an uninterrupted one.

On sharded data the epoch's order is :class:`ShardedPlan`'s: shards in a seeded order, then the
samples of each window of ``window_shards`` consecutive shards shuffled together (an in-buffer
shuffle whose buffer is the window), so at any time workers read from a few shards only.

Data parallel: rank ``r`` of ``world_size`` takes its slice (the plan's ``rank_positions``) of every
global batch; a sample's augmentation is seeded by its position in the global batch, so the union
of the ranks' slices is the single-device batch.

Workers run one torch thread each and return uint8 tensors (4x less to pass between processes
than float); on CUDA the pool pins them so the copy to the device overlaps the step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from kdcore.data.augment import seeded_generator
from kdcore.data.loader import Batch, BatchPlan
from kdcore.data.loader_pool import LoaderPool
from kdcore.data.recipes import augment_samples, decode_size, eval_ops, train_ops
from kdcore.data.samples import SampleReader

EVAL_BATCH = 64
WINDOW_SHARDS = 4
SHARD_ORDER_STREAM, WINDOW_STREAM = 6, 7


def default_loader_workers() -> int:
    """One core stays with the training process; at most 8 workers (``training.loader_workers`` overrides)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


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


class StreamedSplit:
    """A split read through the job's loader workers: what :class:`~kdcore.data.images.ImageSet` is for the in-memory path."""

    def __init__(self, reader: SampleReader, classes: list[str], input_size: Sequence[int], recipe: str, pool: LoaderPool, name: str) -> None:
        self.reader = reader
        self.classes = classes
        self.input_size = tuple(int(v) for v in input_size)
        self.recipe = recipe
        self.pool = pool
        self.name = name
        self.labels = torch.from_numpy(reader.table.label)
        self.train_ops = train_ops(recipe, self.input_size)
        self.eval_ops = eval_ops(recipe, self.input_size)
        pool.add(name, self.view)

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def view(self, indices: Tensor, train: bool, seed: int = 0, epoch: int = 0, step: int = 0, first: int = 0) -> dict[str, Tensor]:
        """Samples ``indices`` decoded, then augmented as the ``first``… positions of global batch (epoch, step), or in the evaluation view."""
        ops = self.train_ops if train else self.eval_ops
        size = decode_size(self.recipe, self.input_size) if train or ops is None else None
        images = [self.reader.decode(i, self.input_size[0], size) for i in indices.tolist()]
        if ops is None:
            stacked = torch.stack(images)
        elif train:
            stacked = augment_samples(images, ops, seed, epoch, step, first)
        else:
            stacked = torch.stack([ops(image) for image in images])
        return {"images": stacked, "labels": self.labels[indices], "indices": indices}

    def evaluation_batches(self, batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        """The split in stored order (shard after shard), through the recipe's evaluation view, ``EVAL_BATCH`` images at a time at
        most, so the loader workers share the work and a pass holds only a few batches of decoded images."""
        size = min(batch_size, EVAL_BATCH)
        requests = [(self.name, torch.arange(start, min(start + size, len(self))), False) for start in range(0, len(self), size)]
        for item in self.pool.run(requests):
            yield item["images"].to(device, non_blocking=True).float().div_(255.0), item["labels"].to(device, non_blocking=True)


class StreamedBatches:
    """The training batches of any epoch from a :class:`StreamedSplit`, the streamed twin of ``TrainingBatches``."""

    def __init__(self, data: StreamedSplit, plan: BatchPlan, device: torch.device, rank: int = 0, world_size: int = 1) -> None:
        self.data = data
        self.plan = plan
        self.device = device
        self.rank = rank
        self.world_size = world_size

    def requests(self, epoch: int, start_step: int) -> list[tuple]:
        """One request per step from ``start_step``: this rank's share of the step's global batch, with what seeds its augmentation."""
        out = []
        for step, indices in enumerate(self.plan.batches(epoch)):
            if step < start_step:
                continue
            first = 0
            if self.world_size > 1:
                positions = self.plan.rank_positions(len(indices), self.rank, self.world_size)
                indices, first = indices[positions], int(positions[0])
            out.append((self.data.name, indices, True, self.plan.seed, epoch, step, first))
        return out

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        for item in self.data.pool.run(self.requests(epoch, start_step)):
            images = item["images"].to(self.device, non_blocking=True).float().div_(255.0)
            yield Batch(images, item["labels"].to(self.device, non_blocking=True), item["indices"], None, epoch)
