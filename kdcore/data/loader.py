"""Batches for training and evaluation, reproducible from (seed, epoch) alone.

The order of epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``, and the
augmentation of step ``s`` from ``(seed, e, s)``. A resumed run therefore needs only the epoch and
step to continue exactly where it stopped: no sampler state to pickle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from kdcore.data.augment import CropFlip, apply_crop_flip, draw_crop_flip
from kdcore.data.images import ImageSet


@dataclass
class Batch:
    """A training batch: float images in [0,1], labels, dataset indices and the augmentation used."""

    images: Tensor
    labels: Tensor
    indices: Tensor
    augment: CropFlip | None = None


def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def epoch_order(num_items: int, seed: int, epoch: int) -> Tensor:
    return torch.randperm(num_items, generator=_generator(seed, epoch, 1))


class BatchPlan:
    """How an epoch is cut into batches; methods may replace it (BAKE's class-balanced batches)."""

    def __init__(self, labels: Tensor, batch_size: int, seed: int) -> None:
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed

    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // self.batch_size)

    def batches(self, epoch: int) -> list[Tensor]:
        """Index tensors for each step of ``epoch``; the last partial batch is dropped (BatchNorm needs >1)."""
        order = epoch_order(len(self.labels), self.seed, epoch)
        steps = self.steps_per_epoch()
        if len(order) < self.batch_size:
            return [order]
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(steps)]


def training_batches(data: ImageSet, plan: BatchPlan, epoch: int, start_step: int, augment: bool, device: torch.device) -> Iterator[Batch]:
    """Yield the batches of ``epoch`` from ``start_step`` on, gathered, converted and augmented."""
    for step, indices in enumerate(plan.batches(epoch)):
        if step < start_step:
            continue
        images = data.images[indices].to(device, non_blocking=True).float().div_(255.0)
        params = None
        if augment:
            params = draw_crop_flip(len(indices), images.shape[-2], images.shape[-1], _generator(plan.seed, epoch, step, 2))
            images = apply_crop_flip(images, params)
        yield Batch(images, data.labels[indices].to(device, non_blocking=True), indices, params)


def evaluation_batches(data: ImageSet, batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(device).float().div_(255.0)
        yield images, data.labels[start : start + batch_size].to(device)
