"""Preprocessing that travels with a model, so every model in kdcore takes float ``[N,C,H,W]`` in [0,1].

Teachers and students may expect different sizes and normalisations (timm's ``DistillationTeacher``
warns about the same trap); wrapping each model with its own resize + normalise makes any pair
compatible and lets the exported student embed its preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Preprocess(nn.Module):
    """Adapt channels, resize to ``input_size`` and normalise with ``mean``/``std`` (all optional)."""

    mean: Tensor
    std: Tensor

    def __init__(self, input_size: Sequence[int], mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in input_size)
        self.channels, self.height, self.width = channels, height, width
        self.normalize = mean is not None and std is not None
        mean_t = torch.tensor(list(mean) if mean is not None else [0.0] * channels).view(1, -1, 1, 1)
        std_t = torch.tensor(list(std) if std is not None else [1.0] * channels).view(1, -1, 1, 1)
        if self.normalize and (mean_t.shape[1] != channels or std_t.shape[1] != channels):
            raise ValueError(f"mean/std need {channels} values, one per channel")
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.channels:
            x = x.mean(dim=1, keepdim=True) if self.channels == 1 else x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x
        if x.shape[-2] != self.height or x.shape[-1] != self.width:
            x = F.interpolate(x, size=(self.height, self.width), mode="bilinear", align_corners=False, antialias=False)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x


class PreprocessedModel(nn.Module):
    """A model behind its own :class:`Preprocess`; ``model`` keeps the plain architecture's state dict."""

    def __init__(self, model: nn.Module, input_size: Sequence[int], mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.preprocess = Preprocess(input_size, mean, std)
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.preprocess(x))
