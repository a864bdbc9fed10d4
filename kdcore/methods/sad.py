"""``sad``: Hou et al. 2019, "Learning Lightweight Lane Detection CNNs by Self Attention Distillation".

The student teaches itself: block m's attention map mimics block m+1's. An attention map is the
spatial softmax of Σ_c F² (the paper's G²_sum); following ENet-SAD_Pytorch's ``at_gen``, the deeper
block's Σ_c F² is bilinearly resized to the shallower block's size before its softmax, every pair of
consecutive stages contributes an MSE (mean over pixels), and the pairs are summed:
loss = CE + weight·Σ_m MSE(Ψ(F_m), Ψ(F_{m+1})), weight 0.1 (``scale_sad_distill``).
SAD starts late (the paper adds it to a model "trained to a reasonable level"; the PyTorch code turns
it on at ``sad_start_iter``): here after ``start_fraction`` of training, 0.5 by default.
Neither map is detached in that code, so gradients reach both blocks; ``detach_target`` stops the
gradient at block m+1 for the reading where the deeper map is a fixed target.
Preset ``paper_ablation``: what the paper's ablations found best, SAD from 2/3 of training (40 of 60
epochs) and only the deeper pairs (block2→3, block3→4: mimicking from the shallowest block hurt),
i.e. ``start_fraction`` 2/3 and ``skip_shallow_pairs`` 1.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.errors import BadSpec
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method
from kdcore.models.features import FeatureModel, feature_channels


class SADHyperparams(Hyperparams):
    weight: float = Field(default=0.1, ge=0.0)
    start_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    detach_target: bool = False
    skip_shallow_pairs: int = Field(default=0, ge=0, description="leave out this many of the shallowest block pairs")

    presets = {"paper_ablation": {"start_fraction": 2 / 3, "skip_shallow_pairs": 1}}


def sad_attention(feature: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Spatial softmax of Σ_c F², ``[N, H·W]``; with ``size`` the channel sum is first resized bilinearly."""
    energy = feature.float().pow(2).sum(dim=1, keepdim=True)
    if size is not None and tuple(energy.shape[-2:]) != tuple(size):
        energy = F.interpolate(energy, size=size, mode="bilinear", align_corners=False)
    return F.softmax(energy.flatten(1), dim=1)


def sad_loss(features: list[Tensor], detach_target: bool = False, skip_shallow_pairs: int = 0) -> Tensor:
    """Σ over consecutive stages (from pair ``skip_shallow_pairs`` on) of MSE(Ψ(F_m), Ψ(F_{m+1}) at F_m's size)."""
    losses = []
    kept = features[skip_shallow_pairs:]
    for shallow, deep in zip(kept[:-1], kept[1:], strict=True):
        target = sad_attention(deep, (shallow.shape[-2], shallow.shape[-1]))
        losses.append(F.mse_loss(sad_attention(shallow), target.detach() if detach_target else target))
    return torch.stack(losses).sum()


@register_method
class SAD(Distiller[SADHyperparams]):
    name = "sad"
    family = "self (attention)"
    summary = "Each stage's attention map mimics the next stage's, switched on halfway through training; no teacher."
    paper = "Hou, Ma, Liu, Loy. Learning Lightweight Lane Detection CNNs by Self Attention Distillation. ICCV 2019. arXiv:1908.00821"
    code = "https://github.com/InhwanBae/ENet-SAD_Pytorch/blob/master/model_ENET_SAD.py"
    teacher_count = (0, 0)
    needs_student_features = True
    Hyperparams = SADHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: SADHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        try:
            # A tuple keeps the wrapper out of the module tree, so the student's weights are not saved twice.
            self._student_features = (FeatureModel(student),)
        except ValueError as exc:
            raise BadSpec(f"method 'sad' reads the student's stage features: {exc}") from exc
        stages = len(feature_channels(student, context.input_size))
        if stages - 1 - hparams.skip_shallow_pairs < 1:
            raise BadSpec(f"method 'sad' needs a pair of consecutive stages: the student has {stages}, skip_shallow_pairs is {hparams.skip_shallow_pairs}")

    def is_active(self, info: StepInfo) -> bool:
        return info.fraction >= self.hparams.start_fraction

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        logits, features = self._student_features[0](batch.images)
        hp = self.hparams
        if self.is_active(info):
            distill = hp.weight * sad_loss(features, hp.detach_target, hp.skip_shallow_pairs)
        else:
            distill = logits.new_zeros((), dtype=torch.float32)
        return with_total(logits, {"ce": F.cross_entropy(logits, batch.labels), "sad": distill})
