"""``byot``: Zhang et al. 2019, "Be Your Own Teacher: Improve the Performance of CNNs via Self Distillation".

Every stage but the last gets a training-only exit, as in the official "final" code (``resnet.py``):
an attention gate (SepConv, BN, ReLU, upsample, sigmoid) times the stage output, a chain of stride-2
SepConvs up to the last stage's width (the paper's bottleneck), global pooling and a linear classifier.
The deepest exit is the student's own head. Losses, as the official ``train.py`` computes them:
  deepest:  CE(z_deep, y)
  exit i:   (1−kd_weight)·CE(z_i, y) + kd_weight·softCE(z_i/T, softmax(z_deep/T)), no T² factor
  features: feature_weight·‖W_i·f_i − f_deep‖₂ with ``torch.dist`` (the norm over the whole batch,
            not squared), W_i a linear adaptation layer; f = pooled features; z_deep, f_deep detached.
The code skips the feature term on the exit next to the deepest (``index != 1``; its comment says
"shallowest", the code does otherwise): so do we. kd_weight 0.3, feature_weight 0.03, T 3.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.errors import BadSpec
from kdcore.losses import soft_cross_entropy
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method
from kdcore.models.features import FeatureModel, feature_channels


class BYOTHyperparams(Hyperparams):
    kd_weight: float = Field(default=0.3, ge=0.0, le=1.0, description="soft-label weight of each shallow exit; its CE gets 1 − kd_weight")
    feature_weight: float = Field(default=0.03, ge=0.0)
    temperature: float = Field(default=3.0, gt=0.0, le=100.0)


class SepConv(nn.Module):
    """Two depthwise-separable 3×3 convolutions, each followed by BN and ReLU (the official ``SepConv``)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(in_chs, in_chs, 3, stride, 1, groups=in_chs, bias=False),
            nn.Conv2d(in_chs, in_chs, 1, bias=False),
            nn.BatchNorm2d(in_chs),
            nn.ReLU(),
            nn.Conv2d(in_chs, in_chs, 3, 1, 1, groups=in_chs, bias=False),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ShallowExit(nn.Module):
    """Attention gate + SepConv bottleneck + classifier on one intermediate stage (training only)."""

    def __init__(self, shapes: list[tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        channels = shapes[0][0]
        self.gate = nn.Sequential(SepConv(channels, channels), nn.BatchNorm2d(channels), nn.ReLU())
        steps = []
        for (c_in, h_in, _), (c_out, h_out, _) in zip(shapes[:-1], shapes[1:], strict=True):
            steps.append(SepConv(c_in, c_out, stride=2 if h_in >= 2 * h_out else 1))
        self.bottleneck = nn.Sequential(*steps)
        self.fc = nn.Linear(shapes[-1][0], num_classes)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        gate = F.interpolate(self.gate(feature), size=feature.shape[-2:], mode="bilinear", align_corners=False)
        pooled = F.adaptive_avg_pool2d(self.bottleneck(torch.sigmoid(gate) * feature), 1).flatten(1)
        return self.fc(pooled), pooled


@register_method
class BYOT(Distiller[BYOTHyperparams]):
    name = "byot"
    family = "self (deep supervision)"
    summary = "Training-only classifiers on the shallow stages learn from labels, the deepest exit's soft labels and its features."
    paper = "Zhang, Song, Gao, Chen, Bao, Ma. Be Your Own Teacher: Improve the Performance of CNNs via Self Distillation. ICCV 2019. arXiv:1905.08094"
    code = "https://github.com/ArchipLab-LinfengZhang/pytorch-self-distillation-final/blob/master/train.py"
    teacher_count = (0, 0)
    needs_student_features = True
    Hyperparams = BYOTHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: BYOTHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        try:
            # A tuple keeps the wrapper out of the module tree, so the student's weights are not saved twice.
            self._student_features = (FeatureModel(student),)
        except ValueError as exc:
            raise BadSpec(f"method 'byot' reads the student's stage features: {exc}") from exc
        shapes = feature_channels(student, context.input_size)
        if len(shapes) < 2:
            raise BadSpec("method 'byot' needs a student with at least two stages")
        self.exits = nn.ModuleList([ShallowExit(shapes[i:], context.num_classes) for i in range(len(shapes) - 1)])
        width = shapes[-1][0]
        # One adaptation layer per exit that gets the feature loss: all but the one next to the deepest.
        self.adaptations = nn.ModuleList([nn.Linear(width, width) for _ in range(len(shapes) - 2)])

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        hp = self.hparams
        logits, features = self._student_features[0](batch.images)
        deep_soft = F.softmax(logits.detach().float() / hp.temperature, dim=1)
        deep_feature = F.adaptive_avg_pool2d(features[-1], 1).flatten(1).detach().float()
        exit_ce: list[Tensor] = []
        exit_kd: list[Tensor] = []
        exit_feature: list[Tensor] = []
        signals: dict[str, Tensor] = {}
        for index, (head, feature) in enumerate(zip(self.exits, features[:-1], strict=True)):
            exit_logits, pooled = head(feature)
            exit_logits = exit_logits.float()
            exit_ce.append(F.cross_entropy(exit_logits, batch.labels))
            exit_kd.append(soft_cross_entropy(exit_logits / hp.temperature, deep_soft))
            if index < len(self.adaptations):
                exit_feature.append(torch.dist(self.adaptations[index](pooled.float()), deep_feature))
            signals[f"exit{index + 1}_top1"] = (exit_logits.argmax(dim=1) == batch.labels).float().mean().detach()
        losses = {
            "ce": F.cross_entropy(logits, batch.labels),
            "exit_ce": (1.0 - hp.kd_weight) * torch.stack(exit_ce).sum(),
            "exit_kd": hp.kd_weight * torch.stack(exit_kd).sum(),
        }
        if exit_feature:
            losses["exit_feature"] = hp.feature_weight * torch.stack(exit_feature).sum()
        return with_total(logits, losses, **signals)
