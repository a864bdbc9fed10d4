"""``dkd``: Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022.

loss = ce_weight·CE + w(epoch)·(α·TCKD + β·NCKD)·τ², as mdistiller ``distillers/DKD.py`` with its
CIFAR defaults (α 1, β 8, τ 4, CE 1, warmup 20). The warmup ramp is mdistiller's
min(epoch/warmup, 1), set per epoch with epochs counted from 1: our 0-based epoch e uses
min((e+1)/warmup, 1), so the first epoch already has weight 1/warmup. ``warmup_epochs: 0`` means
no ramp. ``temperature: "curriculum"`` learns τ as CTKD does (its DKD variant; settings under
``curriculum``). ``kd_weight`` multiplies α·TCKD + β·NCKD (1, mdistiller's; the logit-standardisation
code scales α and β by its KD weight instead, the same loss). ``logit_standardization: true`` z-scores
both logits first (Sun et al. 2024), with that paper's τ 2 and KD weight 9 unless given.

The defaults are mdistiller's CIFAR-100 ones, tuned for resnet32x4→resnet8x4; its other configs
(``configs/cifar100/dkd/*.yaml``, ``configs/imagenet/*/dkd.yaml``) are presets by pair: β 2 for
resnet56→resnet20 and resnet110→resnet32, β 6 for the WRN and VGG pairs (wrn40_2→wrn16_2,
wrn40_2→wrn40_1, vgg13→vgg8, vgg13→mobilenetv2), β 0.5 with τ 1 and one warm-up epoch on ImageNet
(resnet34→resnet18; β 2 for resnet50→mobilenetv1). ``curriculum`` is DKD as CTKD runs it
(``scripts/run_cifar_distill.sh``, ``helper/loops.py``): learned τ, β 2, no warm-up.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.losses import distillation_logits, dkd_loss
from kdcore.methods._curriculum import CurriculumSettings, CurriculumTemperature, FixedOrCurriculumTemperature, step_temperature
from kdcore.methods._logit_standardization import BASE_TEMPERATURE, KD_WEIGHT, LogitStandardization, logit_standardization_preset
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method


class DKDHyperparams(Hyperparams):
    alpha: float = Field(default=1.0, ge=0.0)
    beta: float = Field(default=8.0, ge=0.0)
    temperature: FixedOrCurriculumTemperature = 4.0
    ce_weight: float = Field(default=1.0, ge=0.0)
    warmup_epochs: int = Field(default=20, ge=0)
    curriculum: CurriculumSettings = Field(default_factory=CurriculumSettings)
    kd_weight: float = Field(default=1.0, ge=0.0, description="multiplies α·TCKD + β·NCKD")
    logit_standardization: LogitStandardization = False

    presets = {
        "resnet32x4_resnet8x4": {"beta": 8.0},
        "resnet56_resnet20": {"beta": 2.0},
        "resnet110_resnet32": {"beta": 2.0},
        "wrn_vgg": {"beta": 6.0},
        "imagenet": {"beta": 0.5, "temperature": 1.0, "warmup_epochs": 1},
        "imagenet_resnet50_mobilenetv1": {"beta": 2.0, "temperature": 1.0, "warmup_epochs": 1},
        "curriculum": {"temperature": "curriculum", "beta": 2.0, "warmup_epochs": 0},
        **logit_standardization_preset(temperature=BASE_TEMPERATURE, kd_weight=KD_WEIGHT),
    }


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """mdistiller's ``min(epoch / warmup, 1)`` for our 0-based ``epoch`` (mdistiller counts from 1)."""
    return 1.0 if warmup_epochs == 0 else min((epoch + 1) / warmup_epochs, 1.0)


@register_method
class DKD(Distiller[DKDHyperparams]):
    name = "dkd"
    family = "response"
    summary = "Split KD into target-class and non-target-class terms and weight them separately (α TCKD + β NCKD)."
    paper = "Zhao, Cui, Song, Qiu, Liang. Decoupled Knowledge Distillation. CVPR 2022. arXiv:2203.08679"
    code = "https://github.com/megvii-research/mdistiller/blob/master/mdistiller/distillers/DKD.py"
    teacher_count = (1, 1)
    Hyperparams = DKDHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: DKDHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        self.curriculum = CurriculumTemperature(hparams.curriculum, context.num_classes) if hparams.temperature == "curriculum" else None

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        teacher = self.teacher_logits(batch)[0]  # teacher first, as in kd: faster on CPU
        logits = self.student(batch.images)
        hp = self.hparams
        tau = step_temperature(self.curriculum, hp.temperature, teacher, logits, info.epoch)
        ramp = warmup_factor(info.epoch, hp.warmup_epochs)
        student_in, teacher_in = distillation_logits(logits, teacher, hp.logit_standardization)
        return with_total(
            logits,
            {
                "ce": hp.ce_weight * F.cross_entropy(logits, batch.labels),
                "kd": ramp * hp.kd_weight * dkd_loss(student_in, teacher_in, batch.labels, hp.alpha, hp.beta, tau),
            },
        )

    def signals(self) -> dict[str, float]:
        return self.curriculum.signals() if self.curriculum is not None else {}
