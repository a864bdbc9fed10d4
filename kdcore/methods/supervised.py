"""``supervised``: the student alone with cross-entropy, the baseline every report compares with."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.methods.base import Distiller, Hyperparams, StepInfo, with_total
from kdcore.methods.registry import register_method


class SupervisedHyperparams(Hyperparams):
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)


@register_method
class Supervised(Distiller[SupervisedHyperparams]):
    name = "supervised"
    family = "baseline"
    summary = "Plain cross-entropy training of the student, no teacher."
    paper = "baseline"
    teacher_count = (0, 0)
    Hyperparams = SupervisedHyperparams

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        logits = self.student(batch.images)
        return with_total(logits, {"ce": F.cross_entropy(logits, batch.labels, label_smoothing=self.hparams.label_smoothing)})
