"""``meal_v2``: Shen & Savvides, "MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on
ImageNet without Tricks", 2020 (seed 000).

The student, started from pretrained weights (``student.init``), learns only from the teachers:
soft cross-entropy to the mean of their softmax outputs (τ 1), no hard labels, plus a small
discriminator on logits that tells student outputs from the teachers' (BCE-with-logits, student
target [1,0], teacher target [0,1]). Both losses are summed with weight 1 and taken in one joint
step of the trainer's momentum SGD; the discriminator's parameters sit in their own group, without
weight decay.

Follows the official code (szq0214/MEAL-V2 ``models/discriminator.py``, ``loss.py``, ``train.py``,
``extensions/teacher_wrapper.py``), including where it departs from a GAN reading:
- the discriminator sees the teachers' *averaged logits*, not their averaged softmax;
- the student's logits enter it undetached, so the student also descends the same BCE (no reversal);
- the discriminator is three 1×1 convs on ``[N,C,1,1]`` (we use the equal ``nn.Linear``),
  C → C//8 → C//64 → 2, ReLU after *every* layer including the last, then BCE-with-logits.
  Official code only ever builds it for C = 1000; for small C its widths reach 0 (C = 10) or a
  single ReLU unit that is dead half the time, so hidden layers here are at least 8 wide (exactly
  the official widths from C = 512 up).
- learning rate: official ``train.py`` (and ``FKD_train.py``) set every group's lr to the student's
  at the start of every epoch, before the first step, so its ``--d_lr 1e-4`` is never used and the
  discriminator trains at the student's lr. So it does here by default (``discriminator_lr: null``);
  a number gives the discriminator its own lr, which the trainer's schedule scales like the student's.
- weight decay: the official optimizer has none at all (``--weight-decay 0``). The discriminator's
  group has none here; the student takes ``training.weight_decay`` (default 5e-4): set it to 0, with
  SGD lr 0.01 dropped ×0.1 late (official ``LR_REGIME`` 0.01 to epoch 100, then 0.001), for the
  official run.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.losses import ensemble_soft_targets, soft_cross_entropy
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method


class MealV2Hyperparams(Hyperparams):
    temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    discriminator_weight: float = Field(default=1.0, ge=0.0)
    discriminator_lr: float | None = Field(default=None, gt=0.0, description="null: the student's lr, as the official run ends up using")
    discriminator_reduction: int = Field(default=8, ge=1)


MIN_HIDDEN_WIDTH = 8


class LogitDiscriminator(nn.Module):
    """MEAL V2's discriminator: C → C/K → C/K² → 2, ReLU after each layer (official ``Discriminator``, K 8)."""

    def __init__(self, num_classes: int, reduction: int = 8) -> None:
        super().__init__()
        hidden1 = max(num_classes // reduction, MIN_HIDDEN_WIDTH)
        hidden2 = max(num_classes // reduction // reduction, MIN_HIDDEN_WIDTH)
        self.layers = nn.Sequential(
            nn.Linear(num_classes, hidden1),
            nn.ReLU(),
            nn.Linear(hidden1, hidden2),
            nn.ReLU(),
            nn.Linear(hidden2, 2),
            nn.ReLU(),
        )

    def forward(self, logits: Tensor) -> Tensor:
        return self.layers(logits.float())


def discriminator_targets(batch_size: int, device: torch.device) -> Tensor:
    """[1,0] for each of the ``batch_size`` student rows, then [0,1] for each teacher row (official ``discriminatorLoss``)."""
    labels = torch.cat([torch.zeros(batch_size, dtype=torch.long, device=device), torch.ones(batch_size, dtype=torch.long, device=device)])
    return F.one_hot(labels, 2).float()


@register_method
class MealV2(Distiller[MealV2Hyperparams]):
    name = "meal_v2"
    family = "ensemble + adversarial"
    summary = "Distil an ensemble's averaged softmax into a pretrained student, no hard labels, with a logit discriminator."
    paper = "Shen, Savvides. MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on ImageNet without Tricks. 2020. arXiv:2009.08453"
    code = "https://github.com/szq0214/MEAL-V2"
    teacher_count = (1, None)
    Hyperparams = MealV2Hyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: MealV2Hyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        self.discriminator = LogitDiscriminator(context.num_classes, hparams.discriminator_reduction)
        self._accuracy: Tensor | None = None

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        teacher_logits = self.teacher_logits(batch)  # teachers first, as in kd: faster on CPU
        logits = self.student(batch.images)
        targets = ensemble_soft_targets(teacher_logits, self.hparams.temperature)
        judged = torch.cat([logits, torch.stack(teacher_logits).mean(dim=0)])
        verdict = self.discriminator(judged)
        truth = discriminator_targets(logits.shape[0], logits.device)
        disc = F.binary_cross_entropy_with_logits(verdict, truth)
        with torch.no_grad():
            wanted, other = (verdict * truth).sum(1), (verdict * (1 - truth)).sum(1)
            self._accuracy = (wanted > other).float().mean()
        return with_total(logits, {"kd": soft_cross_entropy(logits, targets), "disc": self.hparams.discriminator_weight * disc})

    def param_groups(self) -> list[dict[str, Any]]:
        """The discriminator in its own group without weight decay, at the student's lr or ``discriminator_lr``."""
        own = {id(p) for p in self.discriminator.parameters()}
        rest = [p for p in self.trainable_parameters() if id(p) not in own]
        discriminator: dict[str, Any] = {"params": list(self.discriminator.parameters()), "weight_decay": 0.0}
        if self.hparams.discriminator_lr is not None:
            discriminator["lr"] = self.hparams.discriminator_lr
        return [{"params": rest}, discriminator]

    def signals(self) -> dict[str, float]:
        """Share of the last batch's 2N rows the discriminator got right; a tie (both outputs 0 after its ReLU) counts as wrong."""
        return {} if self._accuracy is None else {"discriminator_accuracy": float(self._accuracy)}
