"""``fitnet``: Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", as RepDistiller/mdistiller run it.

loss = ce_weight·CE(z_s, y) + β·MSE(r(F_s^h), F_t^h), β 100, in one stage (RepDistiller trains the
hint jointly with CE, not in the paper's two stages). The hint is the middle stage (RepDistiller's
``hint_layer=2`` of [stem, stage1, stage2, stage3]: index (n−1)//2 of the stage list, for student
and teacher each). The regressor r is RepDistiller's ``ConvReg`` (conv + BN + ReLU) chosen by shape:
stride-2 conv when the student map is twice the teacher's, transposed conv when half, a valid conv of
kernel 1+Δ when larger. Where ConvReg raises (student smaller by another factor) we use a 1×1 conv and
resize bilinearly. r is trained with the student and dropped at export.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.errors import BadSpec
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method
from kdcore.models.features import FeatureModel, feature_channels


class FitNetHyperparams(Hyperparams):
    beta: float = Field(default=100.0, ge=0.0)
    ce_weight: float = Field(default=1.0, ge=0.0)
    hint_stage: int | None = Field(default=None, ge=0, description="stage index for both networks; default: each one's middle stage")


class HintRegressor(nn.Module):
    """Maps a student feature map ``(C_s,H_s,W_s)`` onto the teacher's ``(C_t,H_t,W_t)`` (RepDistiller ``ConvReg``)."""

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> None:
        super().__init__()
        (c_s, h_s, w_s), (c_t, h_t, w_t) = student_shape, teacher_shape
        self.resize_to: tuple[int, int] | None = None
        if (h_s, w_s) == (2 * h_t, 2 * w_t):
            self.conv: nn.Module = nn.Conv2d(c_s, c_t, kernel_size=3, stride=2, padding=1)
        elif (2 * h_s, 2 * w_s) == (h_t, w_t):
            self.conv = nn.ConvTranspose2d(c_s, c_t, kernel_size=4, stride=2, padding=1)
        elif h_s >= h_t and w_s >= w_t:
            self.conv = nn.Conv2d(c_s, c_t, kernel_size=(1 + h_s - h_t, 1 + w_s - w_t))
        else:
            self.conv = nn.Conv2d(c_s, c_t, kernel_size=1)
            self.resize_to = (h_t, w_t)
        self.bn = nn.BatchNorm2d(c_t)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.resize_to is not None:
            x = F.interpolate(x, size=self.resize_to, mode="bilinear", align_corners=False)
        return torch.relu(self.bn(x))


def _middle(count: int) -> int:
    return (count - 1) // 2


@register_method
class FitNet(Distiller[FitNetHyperparams]):
    name = "fitnet"
    family = "feature"
    summary = "Regress the student's middle-stage features onto the teacher's through a small conv regressor."
    paper = "Romero, Ballas, Kahou, Chassang, Gatta, Bengio. FitNets: Hints for Thin Deep Nets. ICLR 2015. arXiv:1412.6550"
    code = "https://github.com/HobbitLong/RepDistiller/blob/master/distiller_zoo/FitNet.py"
    teacher_count = (1, 1)
    needs_teacher_features = True
    Hyperparams = FitNetHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: FitNetHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        # Tuples keep these wrappers out of the module tree, so no weight is saved twice (or a teacher's at all).
        self._student_features = (FeatureModel(student),)
        self._teacher_features = (FeatureModel(teachers[0].net),)
        student_shapes = feature_channels(student, context.input_size)
        teacher_shapes = feature_channels(teachers[0].net, context.input_size)
        stage = hparams.hint_stage
        if stage is not None and stage >= min(len(student_shapes), len(teacher_shapes)):
            raise BadSpec(f"hint_stage {stage} is out of range: the student has {len(student_shapes)} stages, the teacher {len(teacher_shapes)}")
        self.student_stage = _middle(len(student_shapes)) if stage is None else stage
        self.teacher_stage = _middle(len(teacher_shapes)) if stage is None else stage
        self.regressor = HintRegressor(student_shapes[self.student_stage], teacher_shapes[self.teacher_stage])

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        logits, student_features = self._student_features[0](batch.images)
        with torch.no_grad():
            _, teacher_features = self._teacher_features[0](batch.images)
        hint = self.regressor(student_features[self.student_stage])
        hp = self.hparams
        return with_total(
            logits,
            {
                "ce": hp.ce_weight * F.cross_entropy(logits, batch.labels),
                "hint": hp.beta * F.mse_loss(hint.float(), teacher_features[self.teacher_stage].float()),
            },
        )
