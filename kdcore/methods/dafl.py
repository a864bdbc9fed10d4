"""``dafl``: Chen et al., "DAFL: Data-Free Learning of Student Networks", ICCV 2019.

The fixed teacher acts as a discriminator: a generator G(z) is trained so that the teacher's responses
look like those to real data (Eqs. 4-6 of the paper)::

    L_G = oh·CE(T(G(z)), argmax T(G(z))) + ie·Σ_c p̄_c·log10 p̄_c + a·(−mean ‖f_T(G(z))‖₁)

where p̄ is the batch-mean teacher softmax (the term is minimal when the batch covers the classes evenly;
base-10 log as the official code) and f_T the teacher's pre-logit features (last stage, global-average
pooled). In the same step the student learns by KD at τ 1 (the official ``kdloss``: KL summed over
classes, mean over the batch) on the detached generated batch.

Generator as the official ``DAFL-train.py``: Linear(latent → 128·(H/4)·(W/4)) → BN → ×2 upsample → conv
3×3 128 → BN(eps 0.8) → LeakyReLU 0.2 → ×2 upsample → conv 3×3 64 → BN(eps 0.8) → LeakyReLU → conv 3×3
C → Tanh, and x = (tanh + 1)/2 in [0,1] for our teachers, which normalise internally. The
``BatchNorm2d(c, 0.8)`` of the official code sets eps, not momentum; we keep it. Deviation: the official
generator ends with an affine-free BatchNorm after the Tanh and feeds that standardised output to a
teacher trained on normalised images. Taken literally (output mapped back through the teacher's own
mean/std) it gives a teacher without normalisation inputs of mean 0 and variance 1 in pixel space, far
from its data: on the built-in digits that reached 24 % validation accuracy against 50 % for the
[0,1] mapping at the same budget, so we use the mapping that works for every teacher.

Defaults are the official CIFAR-10 command (README): oh 0.05, ie 5, a 0.01, latent 1000, Adam lr 0.02
for the generator, 120 iterations per epoch (2000 epochs, batch 1024, student SGD lr 0.1 in the
official run: set those in the job's training config). Presets, the official commands for the other
sets: ``mnist`` oh 1, ie 5, a 0.1, latent 100, lr 0.2; ``cifar100`` oh 0.5, ie 20, a 0.1.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.losses import kd_loss
from kdcore.methods._generator_step import step_generator
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method
from kdcore.models.features import FeatureModel


class DAFLHyperparams(Hyperparams):
    one_hot_weight: float = Field(default=0.05, ge=0.0, description="oh: CE of the teacher to its own argmax")
    entropy_weight: float = Field(default=5.0, ge=0.0, description="ie: negative entropy of the batch-mean teacher softmax")
    activation_weight: float = Field(default=0.01, ge=0.0, description="a: negative mean |pre-logit feature| of the teacher")
    generator_lr: float = Field(default=0.02, gt=0.0, le=10.0)
    latent_dim: int = Field(default=1000, ge=1, le=100_000)
    kd_temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    steps_per_epoch: int = Field(default=120, ge=1, le=100_000)

    presets = {
        "mnist": {"one_hot_weight": 1.0, "entropy_weight": 5.0, "activation_weight": 0.1, "latent_dim": 100, "generator_lr": 0.2},
        "cifar100": {"one_hot_weight": 0.5, "entropy_weight": 20.0, "activation_weight": 0.1},
    }


class DAFLGenerator(nn.Module):
    """The official DAFL generator up to its Tanh; outputs images in [0,1] of size 4·(H//4) × 4·(W//4)."""

    def __init__(self, latent_dim: int, channels: int, height: int, width: int) -> None:
        super().__init__()
        if height < 4 or width < 4:
            raise ValueError("the DAFL generator needs images of at least 4×4")
        self.start = (height // 4, width // 4)
        self.project = nn.Linear(latent_dim, 128 * self.start[0] * self.start[1])
        self.project_norm = nn.BatchNorm2d(128)
        self.block1 = nn.Sequential(nn.Conv2d(128, 128, 3, 1, 1), nn.BatchNorm2d(128, eps=0.8), nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(
            nn.Conv2d(128, 64, 3, 1, 1),
            nn.BatchNorm2d(64, eps=0.8),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, channels, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        x = self.project_norm(self.project(z).view(z.shape[0], 128, *self.start))
        x = self.block1(F.interpolate(x, scale_factor=2))
        return (self.block2(F.interpolate(x, scale_factor=2)) + 1.0) / 2.0


def information_entropy_loss(teacher_logits: Tensor) -> Tensor:
    """Σ_c p̄_c·log10 p̄_c of the batch-mean softmax: −entropy (base 10), lowest when classes are balanced."""
    mean = F.softmax(teacher_logits.float(), dim=1).mean(dim=0)
    return (mean * torch.log10(mean.clamp_min(1e-30))).sum()


def activation_loss(pre_logits: Tensor) -> Tensor:
    """−mean |f_T|: rewards generated images that excite the teacher's features strongly (paper Eq. 5)."""
    return -pre_logits.float().abs().mean()


@register_method
class DAFL(Distiller[DAFLHyperparams]):
    name = "dafl"
    family = "data-free"
    summary = "Train a generator against the fixed teacher (confident, class-balanced, strongly activating outputs) and distil on its images."
    paper = "Chen, Wang, Xu, Yang, Liu, Shi, Xu, Xu, Tian. DAFL: Data-Free Learning of Student Networks. ICCV 2019. arXiv:1904.01186"
    code = "https://github.com/huawei-noah/Efficient-Computing/blob/master/Data-Efficient-Model-Compression/DAFL/DAFL-train.py"
    teacher_count = (1, 1)
    needs_dataset = False
    needs_teacher_features = True
    self_stepped = ("generator",)
    Hyperparams = DAFLHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: DAFLHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        pre = teachers[0].net.preprocess
        self.generator = DAFLGenerator(hparams.latent_dim, pre.channels, pre.height, pre.width)
        self.generator_optimizer = torch.optim.Adam(self.generator.parameters(), lr=hparams.generator_lr)
        self.teacher_features = [FeatureModel(teachers[0].net)]  # a plain list: not a submodule, so not checkpointed twice

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student only: the generator is stepped by its own Adam inside ``forward``."""
        generator = {id(p) for p in self.generator.parameters()}
        return [p for p in super().trainable_parameters() if id(p) not in generator]

    @classmethod
    def synthesis_images(cls, hparams: DAFLHyperparams, batch_size: int, total_steps: int) -> int:
        return batch_size * total_steps  # one generator update through the teacher per step

    def generate(self, count: int) -> Tensor:
        """``count`` generated images in [0,1]."""
        z = torch.randn(count, self.hparams.latent_dim).to(self.generator.project.weight.device)
        return self.data_parallel(self.generator)(z)

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        hp = self.hparams
        images = self.generate(self.context.batch_size)
        teacher_logits, features = self.teacher_features[0](images)
        teacher_logits = teacher_logits.float()
        pre_logits = F.adaptive_avg_pool2d(features[-1], 1).flatten(1)
        one_hot = F.cross_entropy(teacher_logits, teacher_logits.argmax(dim=1))
        entropy = information_entropy_loss(teacher_logits)
        activation = activation_loss(pre_logits)
        generator_loss = hp.one_hot_weight * one_hot + hp.entropy_weight * entropy + hp.activation_weight * activation
        step_generator(self.generator_optimizer, generator_loss)
        logits = self.student(images.detach())
        kd = kd_loss(logits.float(), teacher_logits.detach(), hp.kd_temperature)
        return with_total(logits, {"kd": kd}, one_hot=one_hot.detach(), information_entropy=entropy.detach(), activation=activation.detach())

    def method_state(self) -> dict[str, Any]:
        return {"generator_optimizer": self.generator_optimizer.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if "generator_optimizer" in state:
            self.generator_optimizer.load_state_dict(state["generator_optimizer"])
