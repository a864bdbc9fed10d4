"""What the CIFAR ResNets and WRNs of the KD literature share: a stem, three stages of blocks at strides
1, 2, 2, an optional final norm, global average pooling and a linear head.

Stage outputs come through ``forward_intermediates`` with timm's signature (and ``feature_info`` as
timm lists it), so feature methods treat these models exactly like timm's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

BlockFactory = Callable[[int, int, int], nn.Module]
"""``block(in_chs, out_chs, stride)``."""

STAGE_REDUCTIONS = (1, 2, 4)


class CifarStagedNet(nn.Module):
    def __init__(
        self, stem: nn.Module, block: BlockFactory, widths: tuple[int, int, int, int], blocks: int, num_classes: int, final_norm: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = stem
        stages = []
        in_chs = widths[0]
        for index, out_chs in enumerate(widths[1:]):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(block(in_chs, out_chs, stride), *[block(out_chs, out_chs, 1) for _ in range(blocks - 1)]))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()
        self.num_features = in_chs
        self.fc = nn.Linear(in_chs, num_classes)
        self.feature_info = [
            {"num_chs": width, "reduction": reduction, "module": f"stages.{i}"}
            for i, (width, reduction) in enumerate(zip(widths[1:], STAGE_REDUCTIONS, strict=True))
        ]

    def forward_intermediates(
        self, x: Tensor, indices: list[int] | None = None, intermediates_only: bool = False, **_: object
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The stage outputs (the last one after the final norm) and the final feature map."""
        features = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        x = self.final_norm(x)
        features[-1] = x
        if indices is not None:
            features = [features[i] for i in indices]
        return features if intermediates_only else (x, features)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.final_norm(self.stages(self.stem(x))))
