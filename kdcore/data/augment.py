"""``flip_crop``: zero-padded random crop plus horizontal flip, applied to whole batches.

Parameters are drawn per sample from a seeded generator and returned, so a batch can be replayed
exactly (resume) and a teacher's outputs can be stored per (sample, crop, flip) as FKD does.

Two ways to draw them: fresh every step (``draw_crop_flip``, the plain augmentation), or from a
:class:`VariantPool`, a finite, seeded set of K crops+flips per sample. With the pool a frozen
teacher sees only N·K distinct inputs over the whole run, so its outputs can be computed once and
reused in every later epoch and by later jobs (Shen & Xing, "A Fast Knowledge Distillation
Framework for Visual Recognition" (FKD), ECCV 2022, szq0214/FKD, stores soft labels per crop box
and flip in the same spirit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

# Generator streams, so no two draws share a seed: batch order 1 and per-step draws 2 (kdcore.data.loader).
VARIANT_POOL_STREAM = 3
VARIANT_ORDER_STREAM = 4


@dataclass
class CropFlip:
    """Per-sample crop offsets into the padded image and flip flags (``[N]`` each).

    ``variant`` (``[N]``, on the CPU) names the pool slot each sample's parameters came from; it is
    ``None`` for fresh random draws, which a teacher-output cache cannot reuse.
    """

    dx: Tensor
    dy: Tensor
    flip: Tensor
    variant: Tensor | None = None


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator whose seed folds ``keys`` together: each (seed, epoch, step, stream) gets its own."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def crop_padding(height: int) -> int:
    """4 pixels at 32 px, the CIFAR convention, scaled with the image size."""
    return max(1, round(height / 8))


def draw_crop_flip(n: int, height: int, width: int, generator: torch.Generator) -> CropFlip:
    pad = crop_padding(height)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return CropFlip(dx, dy, flip)


class VariantPool:
    """K crop+flip variants per sample, fixed by the seed; epoch ``e`` uses one slot for every sample.

    Slots are visited in a seeded random order, each exactly once per block of K epochs, so the
    student sees every variant equally often and the teacher is needed for one slot per epoch during
    the first K epochs only. Slot ``v``'s parameters depend on (seed, N, H, W, v) alone, not on K.
    """

    def __init__(self, num_items: int, height: int, width: int, seed: int, variants: int) -> None:
        self.seed = seed
        self.variants = variants
        self.height, self.width = height, width
        drawn = [draw_crop_flip(num_items, height, width, seeded_generator(seed, slot, VARIANT_POOL_STREAM)) for slot in range(variants)]
        self.dx = torch.stack([d.dx for d in drawn])
        self.dy = torch.stack([d.dy for d in drawn])
        self.flip = torch.stack([d.flip for d in drawn])

    def epoch_variant(self, epoch: int) -> int:
        block, position = divmod(epoch, self.variants)
        order = torch.randperm(self.variants, generator=seeded_generator(self.seed, block, VARIANT_ORDER_STREAM))
        return int(order[position])

    def params(self, indices: Tensor, variant: int) -> CropFlip:
        """Crop+flip of slot ``variant`` for the samples at ``indices`` (CPU indices)."""
        return CropFlip(self.dx[variant, indices], self.dy[variant, indices], self.flip[variant, indices], torch.full_like(indices, variant))

    def describe(self, variant: int) -> str:
        """What identifies slot ``variant``'s inputs, for keys of stored teacher outputs."""
        return f"flip_crop-pad{crop_padding(self.height)}-seed{self.seed}-slot{variant}"


def apply_crop_flip(images: Tensor, params: CropFlip) -> Tensor:
    """Crop each image at its own offset after padding, mirroring where ``flip`` is set."""
    n, c, h, w = images.shape
    pad = crop_padding(h)
    padded = F.pad(images, (pad, pad, pad, pad))
    device = images.device
    dx, dy, flip = params.dx.to(device), params.dy.to(device), params.flip.to(device)
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    rows = dy[:, None] + ar_h[None, :]
    cols = torch.where(flip[:, None], dx[:, None] + (w - 1 - ar_w)[None, :], dx[:, None] + ar_w[None, :])
    batch_idx = torch.arange(n, device=device)[:, None, None, None]
    chan_idx = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]
