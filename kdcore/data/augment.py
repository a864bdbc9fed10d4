"""``flip_crop``: zero-padded random crop plus horizontal flip, applied to whole batches.

Parameters are drawn per sample from a generator seeded by (seed, epoch, step) and returned, so a
batch can be replayed exactly (resume), and the teacher's outputs for an epoch's views can be
stored and served again without changing them (``kdcore.teacher_cache``, FKD's idea).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass
class CropFlip:
    """Per-sample crop offsets into the padded image and flip flags (``[N]`` each)."""

    dx: Tensor
    dy: Tensor
    flip: Tensor

    def take(self, positions: Tensor) -> CropFlip:
        """The parameters of the samples at ``positions`` (one rank's share of a batch)."""
        return CropFlip(self.dx[positions], self.dy[positions], self.flip[positions])


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
