"""Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016): WRN-depth-width, pre-activation blocks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

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


class CifarWideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError("WRN depth must be 6n+4")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.num_classes = num_classes
        self.stem = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        stages = []
        in_chs = widths[0]
        for index, out_chs in enumerate(widths[1:]):
            stride = 1 if index == 0 else 2
            layers = [WideBlock(in_chs, out_chs, stride)] + [WideBlock(out_chs, out_chs, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.final_norm = nn.Sequential(nn.BatchNorm2d(in_chs), nn.ReLU())
        self.num_features = in_chs
        self.fc = nn.Linear(in_chs, num_classes)
        self.feature_info = [{"num_chs": w, "reduction": r, "module": f"stages.{i}"} for i, (w, r) in enumerate(zip(widths[1:], (1, 2, 4), strict=True))]

    def forward_intermediates(self, x: Tensor, indices: list[int] | None = None, intermediates_only: bool = False, **_: object):
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


def _builder(depth: int, widen: int):
    def build(num_classes: int = 10, in_chans: int = 3, **_: object) -> CifarWideResNet:
        return CifarWideResNet(depth, widen, num_classes=num_classes, in_chans=in_chans)

    return build


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2), (16, 4)):
    register_model(f"cifar_wrn_{_depth}_{_widen}")(_builder(_depth, _widen))
