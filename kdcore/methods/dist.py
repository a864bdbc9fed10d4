"""``dist``: Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022.

KL asks the student to match the teacher's probabilities exactly; DIST asks only for the same
relations, which a student far weaker than its teacher can still learn. With Y = softmax(z/τ):
  inter-class: 1 − mean over samples of the Pearson correlation between Y_s and Y_t rows,
  intra-class: 1 − mean over classes of the Pearson correlation between Y_s and Y_t columns,
  loss = ce_weight·CE + kd_weight·τ²·(β·inter + γ·intra)
(``kdcore.losses.dist_loss``). Defaults as the official code (hunto/image_classification_sota
``lib/models/losses/dist_kd.py``, ``kd_loss.py``, ``configs/strategies/distill/*.yaml``): β 1, γ 1,
τ 1 (``kd: dist``, the ImageNet setting), CE weight 1 and KD weight 2 (``ori_loss_weight``,
``kd_loss_weight``). Its CIFAR-100 config uses τ 4 (``kd: dist_t4``): preset ``cifar``.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.losses import dist_loss
from kdcore.methods.base import Distiller, Hyperparams, StepInfo, with_total
from kdcore.methods.registry import register_method


class DISTHyperparams(Hyperparams):
    beta: float = Field(default=1.0, ge=0.0, description="weight of the inter-class (per-sample) relation")
    gamma: float = Field(default=1.0, ge=0.0, description="weight of the intra-class (per-class) relation")
    temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    ce_weight: float = Field(default=1.0, ge=0.0)
    kd_weight: float = Field(default=2.0, ge=0.0)

    presets = {"cifar": {"temperature": 4.0}}


@register_method
class DIST(Distiller[DISTHyperparams]):
    name = "dist"
    family = "response"
    summary = "Match the teacher's inter-class and intra-class relations (Pearson correlation of probabilities), not its exact probabilities."
    paper = "Huang, You, Wang, Qian, Xu. Knowledge Distillation from A Stronger Teacher. NeurIPS 2022. arXiv:2205.10536"
    code = "https://github.com/hunto/image_classification_sota/blob/main/lib/models/losses/dist_kd.py"
    teacher_count = (1, 1)
    Hyperparams = DISTHyperparams

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        teacher = self.teacher_logits(batch)[0]  # teacher first, as in kd: faster on CPU
        logits = self.student(batch.images)
        hp = self.hparams
        return with_total(
            logits,
            {
                "ce": hp.ce_weight * F.cross_entropy(logits, batch.labels),
                "kd": hp.kd_weight * dist_loss(logits.float(), teacher.float(), hp.beta, hp.gamma, hp.temperature),
            },
        )
