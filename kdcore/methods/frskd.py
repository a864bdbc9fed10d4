"""``frskd``: Ji et al. 2021, "Refine Myself by Teaching Myself: Feature Refinement via Self-Knowledge Distillation".

A self-teacher (the official classification ``BiFPNc``: one BiFPN layer over all stage outputs, each
level widened ``width``× by 1×1 lateral convs, top-down then bottom-up paths fused with fast
normalised weights relu(w)/(Σw+ε), depthwise-separable 3×3 blocks of ``depth`` convs, nearest
upsampling and same-padded 3×3/2 max-pooling, its own linear classifier on the pooled top level)
refines the student's features. As the official ``utils.train`` and ``distill_loss/AT.py``:
  loss = CE(z_s) + CE(z_t) + α·τ²·KL(softmax(z_t/τ) ‖ softmax(z_s/τ)) + β·Σ_i AT(F_i, F̂_i)
with z_t and F̂ detached in the distillation terms, α 2, β 100, τ 4, width 2, depth 2. The student's
features are not detached on their way into the self-teacher, so its CE also trains the student.
Where consecutive stages are not a factor 2 apart, resizing falls back to nearest / adaptive max pool.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.errors import BadSpec
from kdcore.losses import at_loss, kd_loss
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method
from kdcore.models.features import FeatureModel, feature_channels


class FRSKDHyperparams(Hyperparams):
    alpha: float = Field(default=2.0, ge=0.0)
    beta: float = Field(default=100.0, ge=0.0)
    temperature: float = Field(default=4.0, gt=0.0, le=100.0)
    width: int = Field(default=2, ge=1, le=8, description="channel multiplier of the self-teacher's levels")
    depth: int = Field(default=2, ge=1, le=8, description="separable 3x3 convs per fusion block")


def conv_block(in_chs: int, out_chs: int, kernel_size: int = 1, depth: int = 1) -> nn.Sequential:
    """Official ``DepthConvBlock``: 1×1 conv+BN+ReLU, or ``depth`` × (dw 3×3, pw 1×1, BN) with ReLU between."""
    if kernel_size == 1:
        return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs), nn.ReLU())
    layers: list[nn.Module] = []
    for index in range(depth):
        chs = in_chs if index == 0 else out_chs
        if index > 0:
            layers.append(nn.ReLU())
        layers += [
            nn.Conv2d(chs, chs, kernel_size, 1, kernel_size // 2, groups=chs, bias=False),
            nn.Conv2d(chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
        ]
    return nn.Sequential(*layers)


def upsample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="nearest")


def downsample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """TF-style "same" 3×3/2 max-pool (zero padding, as the official code; inputs are ReLU outputs)."""
    h, w = x.shape[-2:]
    if (math.ceil(h / 2), math.ceil(w / 2)) != tuple(size):
        return F.adaptive_max_pool2d(x, size)
    pad_h, pad_w = max((math.ceil(h / 2) - 1) * 2 + 3 - h, 0), max((math.ceil(w / 2) - 1) * 2 + 3 - w, 0)
    x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
    return F.max_pool2d(x, 3, 2)


def fuse(weights: Tensor, inputs: list[Tensor], epsilon: float = 1e-6) -> Tensor:
    """BiFPN fast normalised fusion: Σ relu(w_k)·x_k / (Σ relu(w_k) + ε)."""
    w = torch.relu(weights)
    w = w / (w.sum() + epsilon)
    return torch.stack([w[k] * x for k, x in enumerate(inputs)]).sum(dim=0)


class SelfTeacher(nn.Module):
    """One BiFPN layer over the student's stage features plus a classifier: returns refined features and logits."""

    def __init__(self, shapes: list[tuple[int, ...]], num_classes: int, width: int, depth: int) -> None:
        super().__init__()
        channels = [shape[0] for shape in shapes]
        wide = [c * width for c in channels]
        levels = len(channels)
        self.lateral = nn.ModuleList([conv_block(c, c * width) for c in channels])
        self.skip = nn.ModuleList([conv_block(c, c * width) for c in channels[1:]])
        self.up_project = nn.ModuleList([conv_block(wide[i + 1], wide[i]) for i in range(levels - 1)])
        self.up_conv = nn.ModuleList([conv_block(wide[i], wide[i], 3, depth) for i in range(levels - 1)])
        self.up_weight = nn.ParameterList([nn.Parameter(torch.ones(2)) for _ in range(levels - 1)])
        self.down_project = nn.ModuleList([conv_block(wide[i - 1], wide[i]) for i in range(1, levels)])
        self.down_conv = nn.ModuleList([conv_block(wide[i], wide[i], 3, depth) for i in range(1, levels)])
        self.down_weight = nn.ParameterList([nn.Parameter(torch.ones(3 if i < levels - 1 else 2)) for i in range(1, levels)])
        self.fc = nn.Linear(wide[-1], num_classes)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        skips = [conv(torch.relu(f)) for conv, f in zip(self.skip, features[1:], strict=True)]
        lateral = [conv(torch.relu(f)) for conv, f in zip(self.lateral, features, strict=True)]
        top_down = [lateral[-1]]
        for i in range(len(lateral) - 2, -1, -1):
            upper = self.up_project[i](upsample_to(torch.relu(top_down[0]), lateral[i].shape[-2:]))
            top_down.insert(0, self.up_conv[i](fuse(self.up_weight[i], [torch.relu(lateral[i]), upper])))
        outputs = [top_down[0]]
        for i in range(1, len(lateral)):
            lower = self.down_project[i - 1](downsample_to(torch.relu(outputs[-1]), lateral[i].shape[-2:]))
            parts = [torch.relu(skips[i - 1])] + ([torch.relu(top_down[i])] if i < len(lateral) - 1 else []) + [lower]
            outputs.append(self.down_conv[i - 1](fuse(self.down_weight[i - 1], parts)))
        refined = [torch.relu(f) for f in outputs]
        return refined, self.fc(F.adaptive_avg_pool2d(refined[-1], 1).flatten(1))


@register_method
class FRSKD(Distiller[FRSKDHyperparams]):
    name = "frskd"
    family = "self (feature refinement)"
    summary = "A BiFPN self-teacher refines the student's stage features; the student distils its logits and attention maps."
    paper = "Ji, Shin, Hwang, Park, Moon. Refine Myself by Teaching Myself: Feature Refinement via Self-Knowledge Distillation. CVPR 2021. arXiv:2103.08273"
    code = "https://github.com/MingiJi/FRSKD/blob/main/classification/models/bifpnc.py"
    teacher_count = (0, 0)
    needs_student_features = True
    Hyperparams = FRSKDHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: FRSKDHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        try:
            # A tuple keeps the wrapper out of the module tree, so the student's weights are not saved twice.
            self._student_features = (FeatureModel(student),)
        except ValueError as exc:
            raise BadSpec(f"method 'frskd' reads the student's stage features: {exc}") from exc
        shapes = feature_channels(student, context.input_size)
        if len(shapes) < 2:
            raise BadSpec("method 'frskd' needs a student with at least two stages")
        self.self_teacher = SelfTeacher(shapes, context.num_classes, hparams.width, hparams.depth)

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        hp = self.hparams
        logits, features = self._student_features[0](batch.images)
        refined, self_teacher_logits = self.self_teacher(features)
        attention = torch.stack([at_loss(f.float(), r.detach().float()) for f, r in zip(features, refined, strict=True)]).sum()
        return with_total(
            logits,
            {
                "ce": F.cross_entropy(logits, batch.labels),
                "self_teacher_ce": F.cross_entropy(self_teacher_logits, batch.labels),
                "kd": hp.alpha * kd_loss(logits.float(), self_teacher_logits.detach().float(), hp.temperature),
                "at": hp.beta * attention,
            },
            self_teacher_top1=(self_teacher_logits.argmax(dim=1) == batch.labels).float().mean().detach(),
        )
