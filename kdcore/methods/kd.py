"""``kd``: Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

loss = ce_weight·CE(z_s, y) + kd_weight·τ²·KL(softmax(z_t/τ) ‖ softmax(z_s/τ)), with RepDistiller /
mdistiller defaults (τ 4, CE 0.1, KD 0.9). With several teachers, their logits are averaged.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.losses import kd_loss
from kdcore.methods.base import Distiller, Hyperparams, StepInfo, with_total
from kdcore.methods.registry import register_method


class KDHyperparams(Hyperparams):
    temperature: float = Field(default=4.0, gt=0.0, le=100.0)
    ce_weight: float = Field(default=0.1, ge=0.0)
    kd_weight: float = Field(default=0.9, ge=0.0)


@register_method
class KD(Distiller):
    name = "kd"
    family = "response"
    summary = "Match the teacher's temperature-softened class probabilities plus a small cross-entropy term."
    paper = "Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural Network. 2015. arXiv:1503.02531"
    code = "https://github.com/megvii-research/mdistiller/blob/master/mdistiller/distillers/KD.py"
    teacher_count = (1, None)
    Hyperparams = KDHyperparams

    def forward_train(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        logits = self.student(batch.images)
        teacher = torch.stack(self.teacher_logits(batch)).mean(dim=0)
        hp = self.hparams
        return with_total(
            logits,
            {
                "ce": hp.ce_weight * F.cross_entropy(logits, batch.labels),
                "kd": hp.kd_weight * kd_loss(logits, teacher, hp.temperature),
            },
        )
