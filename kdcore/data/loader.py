"""Batches for training and evaluation, reproducible from (seed, epoch) alone.

The order of epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``, and the
augmentation of step ``s`` from ``(seed, e, s)``. A resumed run therefore needs only the epoch and
step to continue exactly where it stopped: no sampler state to pickle.

No DataLoader: images are decoded once into one uint8 tensor, so a batch is a gather, a convert and
an augment. On CUDA the whole uint8 set is copied to the GPU once when it fits
(``DEVICE_RESIDENT_MAX_BYTES``), so steps move no images across PCIe; larger sets go through pinned
memory with non-blocking copies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from kdcore.data.augment import CropFlip, apply_crop_flip, draw_crop_flip, seeded_generator
from kdcore.data.images import ImageSet
from kdcore.data.recipes import SampleOps, augment_samples
from kdcore.errors import BadSpec

if TYPE_CHECKING:  # kdcore.data.stream builds on this module
    from kdcore.data.stream import StreamedSplit

DEVICE_RESIDENT_MAX_BYTES = 2 * 1024**3
ORDER_STREAM, AUGMENT_STREAM = 1, 2


@dataclass
class Batch:
    """A training batch: float images in [0,1], labels, dataset indices (CPU), the augmentation used and the epoch it belongs to."""

    images: Tensor
    labels: Tensor
    indices: Tensor
    augment: CropFlip | None = None
    epoch: int | None = None


def epoch_order(num_items: int, seed: int, epoch: int) -> Tensor:
    return torch.randperm(num_items, generator=seeded_generator(seed, epoch, ORDER_STREAM))


class BatchPlan:
    """How an epoch is cut into batches; methods may replace it (BAKE's class-balanced batches)."""

    def __init__(self, labels: Tensor, batch_size: int, seed: int) -> None:
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed

    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // self.batch_size)

    def rank_positions(self, batch_len: int, rank: int, ranks: int) -> Tensor:
        """Which positions of a global batch rank ``rank`` of ``ranks`` trains on: an equal contiguous share."""
        if batch_len % ranks:
            raise BadSpec(f"a batch of {batch_len} does not split evenly over {ranks} ranks; make training.batch_size a multiple of {ranks}")
        return torch.arange(batch_len).tensor_split(ranks)[rank]

    def order(self, epoch: int) -> Tensor:
        """Every sample once, in the order of ``epoch``."""
        return epoch_order(len(self.labels), self.seed, epoch)

    def batches(self, epoch: int) -> list[Tensor]:
        """Index tensors for each step of ``epoch``; the last partial batch is dropped (BatchNorm needs >1)."""
        order = self.order(epoch)
        steps = self.steps_per_epoch()
        if len(order) < self.batch_size:
            return [order]
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(steps)]


class TrainingBatches:
    """The batches of any epoch of one run: ``plan`` says which samples, ``augment`` how they look.

    With ``ranks`` > 1 each step yields this rank's share of the global batch, augmented exactly as
    the same samples of that batch would be in a single process.
    """

    def __init__(
        self,
        data: ImageSet,
        plan: BatchPlan,
        device: torch.device,
        augment: bool,
        rank: int = 0,
        ranks: int = 1,
        sample_ops: SampleOps | None = None,
    ) -> None:
        self.plan = plan
        self.sample_ops = sample_ops
        self.stored = data.images
        self.rank, self.ranks = rank, ranks
        self.device = device
        self.augment = augment
        resident = device.type != "cpu" and data.images.numel() <= DEVICE_RESIDENT_MAX_BYTES
        self.images = data.images.to(device) if resident else data.images
        self.labels = data.labels.to(device)

    def _gather(self, indices: Tensor) -> Tensor:
        if self.images.device == self.device:
            return self.images[indices.to(self.device, non_blocking=True)]
        picked = self.images[indices]
        if self.device.type == "cuda":
            picked = picked.pin_memory()
        return picked.to(self.device, non_blocking=True)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Yield the batches of ``epoch`` from ``start_step`` on, gathered, converted and augmented."""
        for step, indices in enumerate(self.plan.batches(epoch)):
            if step < start_step:
                continue
            positions = self.plan.rank_positions(len(indices), self.rank, self.ranks) if self.ranks > 1 else None
            batch_len = len(indices)
            if positions is not None:
                indices = indices[positions]
            if self.sample_ops is not None:
                first = int(positions[0]) if positions is not None else 0
                images = (
                    augment_samples(self.stored[indices], self.sample_ops, self.plan.seed, epoch, step, first)
                    .to(self.device, non_blocking=True)
                    .float()
                    .div_(255.0)
                )
            else:
                images = self._gather(indices).float().div_(255.0)
            params = None
            if self.augment:
                params = draw_crop_flip(batch_len, images.shape[-2], images.shape[-1], seeded_generator(self.plan.seed, epoch, step, AUGMENT_STREAM))
                if positions is not None:
                    params = params.take(positions)
            if params is not None:
                images = apply_crop_flip(images, params)
            yield Batch(images, self.labels[indices.to(self.labels.device)], indices, params, epoch)


def evaluation_batches(data: ImageSet | StreamedSplit, batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    """Float batches in [0,1] in stored order; a streamed split (``kdcore.data.stream.StreamedSplit``) decodes its own."""
    if not isinstance(data, ImageSet):
        yield from data.evaluation_batches(batch_size, device)
        return
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(device).float().div_(255.0)
        yield images, data.labels[start : start + batch_size].to(device)
