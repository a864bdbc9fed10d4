"""``ctkd``: Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023 (seed 003).

KD whose temperature is learned adversarially: τ = t_start + t_end·sigmoid(T_pred), T_pred behind a
gradient reversal layer whose weight λ rises 0 → 1 on a cosine over ``cosine_epochs`` (set once per
epoch, counting epochs from 1 as the official loop does). The student minimises
ce_weight·CE + kd_weight·τ²·KL; τ receives −λ times its gradient, i.e. it maximises the KD term.

Follows the official code (zhengli97/CTKD ``models/temp_global.py``, ``helper/loops.py``,
``train_student.py`` with ``scripts/run_cifar_distill.sh``): T_pred starts at 1, so τ starts at
1 + 20·sigmoid(1) ≈ 15.6; τ is trained by the same optimizer and weight decay as the student.
``mode: instance`` predicts one τ per sample from the teacher and student probabilities (see
:class:`~kdcore.methods._curriculum.InstanceTemperature` for what is ours there).
``logit_standardization: true`` z-scores both logits before the KD term (Sun et al. 2024, whose CTKD
code predicts τ from the raw logits, as here), with that paper's KD weight 9 unless given.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from kdcore.data.loader import Batch
from kdcore.losses import ce_and_kd_terms
from kdcore.methods._curriculum import CurriculumSettings, CurriculumTemperature
from kdcore.methods._logit_standardization import KD_WEIGHT, LogitStandardization, logit_standardization_preset
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method


class CTKDHyperparams(Hyperparams, CurriculumSettings):
    ce_weight: float = Field(default=0.1, ge=0.0)
    kd_weight: float = Field(default=0.9, ge=0.0)
    logit_standardization: LogitStandardization = False

    presets = logit_standardization_preset(kd_weight=KD_WEIGHT)


@register_method
class CTKD(Distiller[CTKDHyperparams]):
    name = "ctkd"
    family = "response + curriculum"
    summary = "KD with a learnable temperature trained adversarially on an easy-to-hard (cosine) curriculum."
    paper = "Li et al. Curriculum Temperature for Knowledge Distillation. AAAI 2023. arXiv:2211.16231"
    code = "https://github.com/zhengli97/CTKD"
    teacher_count = (1, 1)
    Hyperparams = CTKDHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: CTKDHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        self.temperature = CurriculumTemperature(hparams, context.num_classes)

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        teacher = torch.stack(self.teacher_logits(batch)).mean(dim=0)  # teacher first, as in kd: faster on CPU
        logits = self.student(batch.images)
        tau = self.temperature(teacher, logits, info.epoch)
        hp = self.hparams
        return with_total(logits, ce_and_kd_terms(logits, teacher, batch.labels, tau, hp.ce_weight, hp.kd_weight, hp.logit_standardization))

    def signals(self) -> dict[str, float]:
        return self.temperature.signals()
