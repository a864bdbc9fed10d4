"""CIFAR ResNets of the KD literature (He et al. 2016, CIFAR variant; widths as in RepDistiller).

``resnet{depth}`` uses widths 16/16/32/64; ``resnet{depth}x4`` uses 32/64/128/256. depth = 6n+2.
Stage outputs are exposed through ``forward_intermediates`` with timm's signature, so feature
methods treat these models exactly like timm's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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


class CifarResNet(nn.Module):
    """Stem (3×3 conv) then three stages of BasicBlocks then global pooling and a linear head."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError("CIFAR ResNet depth must be 6n+2")
        blocks = (depth - 2) // 6
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages = []
        in_chs = widths[0]
        for index, out_chs in enumerate(widths[1:]):
            stride = 1 if index == 0 else 2
            layers = [BasicBlock(in_chs, out_chs, stride)] + [BasicBlock(out_chs, out_chs, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        self.fc = nn.Linear(in_chs, num_classes)
        self.feature_info = [{"num_chs": w, "reduction": r, "module": f"stages.{i}"} for i, (w, r) in enumerate(zip(widths[1:], (1, 2, 4), strict=True))]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_intermediates(self, x: Tensor, indices: list[int] | None = None, intermediates_only: bool = False, **_: object):
        features = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        if indices is not None:
            features = [features[i] for i in indices]
        return features if intermediates_only else (x, features)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.stages(self.stem(x)))


def _builder(depth: int, widths: tuple[int, int, int, int]):
    def build(num_classes: int = 10, in_chans: int = 3, **_: object) -> CifarResNet:
        return CifarResNet(depth, widths, num_classes=num_classes, in_chans=in_chans)

    return build


for _depth in (8, 14, 20, 32, 44, 56, 110):
    register_model(f"cifar_resnet{_depth}")(_builder(_depth, (16, 16, 32, 64)))
for _depth in (8, 32):
    register_model(f"cifar_resnet{_depth}x4")(_builder(_depth, (32, 64, 128, 256)))
