"""``at``: Zagoruyko & Komodakis 2017, "Paying More Attention to Attention" (activation-based AT).

loss = ce_weight·CE(z_s, y) + β·Σ_j ‖Q_s^j − Q_t^j‖², Q = L2-normalise(flatten(mean_c F^p)), summed
over the stage outputs (Eq. 2 with the squared distance RepDistiller and mdistiller use), β 1000,
p 2. As in RepDistiller (``feat[1:-1]``) and mdistiller (``feats[1:]``) the stem is not a pair and
stages are paired in order (``zip``), so surplus stages of the deeper network are ignored.
Note: timm ResNets list their stem (``act1``) among the stage features, so there it is paired too.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.losses import at_loss
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method
from kdcore.models.features import FeatureModel


class ATHyperparams(Hyperparams):
    p: int = Field(default=2, ge=1, le=8)
    beta: float = Field(default=1000.0, ge=0.0)
    ce_weight: float = Field(default=1.0, ge=0.0)


@register_method
class AT(Distiller[ATHyperparams]):
    name = "at"
    family = "feature"
    summary = "Match the teacher's spatial attention maps (channel mean of squared activations) at every stage."
    paper = "Zagoruyko, Komodakis. Paying More Attention to Attention. ICLR 2017. arXiv:1612.03928"
    code = "https://github.com/HobbitLong/RepDistiller/blob/master/distiller_zoo/AT.py"
    teacher_count = (1, 1)
    needs_teacher_features = True
    Hyperparams = ATHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: ATHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        # Tuples keep these wrappers out of the module tree, so no weight is saved twice (or a teacher's at all).
        self._student_features = (FeatureModel(student),)
        self._teacher_features = (FeatureModel(teachers[0].net),)

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        logits, student_features = self._student_features[0](batch.images)
        with torch.no_grad():
            _, teacher_features = self._teacher_features[0](batch.images)
        hp = self.hparams
        transfer = torch.stack([at_loss(s.float(), t.float(), hp.p) for s, t in zip(student_features, teacher_features, strict=False)]).sum()
        return with_total(logits, {"ce": hp.ce_weight * F.cross_entropy(logits, batch.labels), "at": hp.beta * transfer})
