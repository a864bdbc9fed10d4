"""Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016): WRN-depth-width, pre-activation blocks.

Stages, stage outputs and the head are :class:`~kdcore.models.cifar_stages.CifarStagedNet`'s.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdcore.models.cifar_stages import CifarStagedNet
from kdcore.models.registry import register_model


class WideBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class CifarWideResNet(CifarStagedNet):
    """Stem (3×3 conv) then three stages of pre-activation blocks, a final BN + ReLU, global pooling and a linear head."""

    def __init__(self, depth: int, widen: int, num_classes: int = 10, in_chans: int = 3) -> None:
        if (depth - 4) % 6 != 0:
            raise ValueError("WRN depth must be 6n+4")
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        final_norm = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU())
        super().__init__(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), WideBlock, widths, (depth - 4) // 6, num_classes, final_norm)


def _builder(depth: int, widen: int):
    def build(num_classes: int = 10, in_chans: int = 3, **_: object) -> CifarWideResNet:
        return CifarWideResNet(depth, widen, num_classes=num_classes, in_chans=in_chans)

    return build


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2), (16, 4)):
    register_model(f"cifar_wrn_{_depth}_{_widen}")(_builder(_depth, _widen))
