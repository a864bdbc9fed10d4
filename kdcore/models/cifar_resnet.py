"""CIFAR ResNets of the KD literature (He et al. 2016, CIFAR variant; widths as in RepDistiller).

``resnet{depth}`` uses widths 16/16/32/64; ``resnet{depth}x4`` uses 32/64/128/256. depth = 6n+2.
Stages, stage outputs and the head are :class:`~kdcore.models.cifar_stages.CifarStagedNet`'s.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdcore.models.cifar_stages import CifarStagedNet
from kdcore.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(CifarStagedNet):
    """Stem (3×3 conv, BN, ReLU) then three stages of BasicBlocks, global pooling and a linear head."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int = 10, in_chans: int = 3) -> None:
        if (depth - 2) % 6 != 0:
            raise ValueError("CIFAR ResNet depth must be 6n+2")
        stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        super().__init__(stem, BasicBlock, widths, (depth - 2) // 6, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def _builder(depth: int, widths: tuple[int, int, int, int]):
    def build(num_classes: int = 10, in_chans: int = 3, **_: object) -> CifarResNet:
        return CifarResNet(depth, widths, num_classes=num_classes, in_chans=in_chans)

    return build


for _depth in (8, 14, 20, 32, 44, 56, 110):
    register_model(f"cifar_resnet{_depth}")(_builder(_depth, (16, 16, 32, 64)))
for _depth in (8, 32):
    register_model(f"cifar_resnet{_depth}x4")(_builder(_depth, (32, 64, 128, 256)))
