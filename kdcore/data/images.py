"""Labelled images held as one uint8 tensor, already at the job's input size.

Decoding and resizing happen once per dataset and size; training then only gathers, converts and
augments batches, which is what keeps a CPU loop fed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass
class ImageSet:
    """``images``: uint8 ``[N,C,H,W]``; ``labels``: int64 ``[N]``; ``classes``: names by label index."""

    images: Tensor
    labels: Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def fit_to_size(images: Tensor, input_size: Sequence[int]) -> Tensor:
    """uint8 ``[N,C,H,W]`` → uint8 at ``input_size`` (channels averaged or repeated, bilinear resize)."""
    channels, height, width = (int(v) for v in input_size)
    out = images
    if out.shape[1] != channels:
        if channels == 1:
            out = out.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
        elif out.shape[1] == 1:
            out = out.expand(-1, channels, -1, -1).contiguous()
        else:
            raise ValueError(f"cannot turn {out.shape[1]}-channel images into {channels} channels")
    if tuple(out.shape[-2:]) != (height, width):
        chunks = [
            F.interpolate(part.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=True).round().clamp(0, 255).to(torch.uint8)
            for part in out.split(1024)
        ]
        out = torch.cat(chunks) if chunks else out.new_zeros((0, channels, height, width))
    return out.contiguous()
