"""CTKD's reusable parts (Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023).

A learnable temperature τ = t_start + t_end·sigmoid(T_pred) is trained through a gradient reversal
layer, so it *maximises* the distillation loss the student minimises; the reversal weight λ rises
on a cosine curve, making the task harder as training goes (paper Eq. 5–8; official code
zhengli97/CTKD ``models/temp_global.py``, ``helper/loops.py``, ``train_student.py``).

Kept here, apart from ``ctkd.py``, so ``kd`` and ``dkd`` also take ``temperature: "curriculum"``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.methods.base import Settings

FixedOrCurriculumTemperature = Annotated[float, Field(gt=0.0, le=100.0)] | Literal["curriculum"]


class CurriculumSettings(Settings):
    """The official defaults (``train_student.py`` flags and ``scripts/run_cifar_distill.sh``)."""

    mode: Literal["global", "instance"] = "global"
    t_start: float = Field(default=1.0, ge=0.0)
    t_end: float = Field(default=20.0, gt=0.0)
    theta_init: float = 1.0
    cosine_epochs: int = Field(default=10, ge=1)
    lambda_start: float = Field(default=0.0, ge=0.0)
    lambda_end: float = Field(default=1.0, ge=0.0)
    instance_hidden: int = Field(default=128, ge=1)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: Tensor, weight: float) -> Tensor:
    """Identity forward; backward multiplies the gradient by −weight (Ganin & Lempitsky 2015).

    The official layer multiplies by its λ argument and is handed λ ∈ [0, −1]; we take λ ≥ 0 and
    negate here, which is the same map.
    """
    return _ReverseGradient.apply(x, weight)


class GradientReversal(nn.Module):
    def forward(self, x: Tensor, weight: float) -> Tensor:
        return reverse_gradient(x, weight)


def cosine_lambda(epoch: int, cosine_epochs: int, start: float = 0.0, end: float = 1.0) -> float:
    """λ at ``epoch`` as the official ``CosineDecay.get_value``: i clipped to [0, L], start + (end−start)·(1−cos(πi/L))/2.

    The official loop counts epochs from 1 and sets λ once per epoch; callers pass that count.
    """
    i = min(max(epoch, 0), cosine_epochs)
    return start + (end - start) * (1.0 - math.cos(math.pi * i / cosine_epochs)) / 2.0


class GlobalTemperature(nn.Module):
    """One learnable scalar T_pred (official ``Global_T``: ``nn.Parameter(torch.ones(1))``), reversed by the GRL."""

    def __init__(self, theta_init: float = 1.0) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta_init)))
        self.reversal = GradientReversal()

    def forward(self, teacher_logits: Tensor, student_logits: Tensor, weight: float) -> Tensor:
        return self.reversal(self.theta, weight)


class InstanceTemperature(nn.Module):
    """Per-sample T_pred from a 2-layer MLP on the concatenated teacher and student probabilities.

    The paper's Fig. 2(b) and the authors' write-up ("two 1×1-conv layers on the concatenated
    teacher and student outputs") fix the shape; the code itself is only on a Drive link, so the
    hidden width (``instance_hidden``) is ours. Inputs are detached so the student learns only from
    the loss, and the last bias starts at ``theta_init`` so τ starts where the global mode does.
    """

    def __init__(self, num_classes: int, hidden: int = 128, theta_init: float = 1.0) -> None:
        super().__init__()
        hidden_layer, head = nn.Linear(2 * num_classes, hidden), nn.Linear(hidden, 1)
        nn.init.constant_(head.bias, theta_init)
        self.mlp = nn.Sequential(hidden_layer, nn.ReLU(inplace=True), head)
        self.reversal = GradientReversal()

    def forward(self, teacher_logits: Tensor, student_logits: Tensor, weight: float) -> Tensor:
        probs = torch.cat([F.softmax(teacher_logits.detach(), dim=1), F.softmax(student_logits.detach(), dim=1)], dim=1)
        return self.reversal(self.mlp(probs.float()).squeeze(1), weight)


def step_temperature(
    curriculum: CurriculumTemperature | None, fixed: FixedOrCurriculumTemperature, teacher_logits: Tensor, student_logits: Tensor, epoch: int
) -> float | Tensor:
    """This step's τ: learned where the method was built with ``temperature: "curriculum"``, else the fixed value."""
    if curriculum is not None:
        return curriculum(teacher_logits, student_logits, epoch)
    if isinstance(fixed, str):
        raise ValueError("temperature 'curriculum' needs the method's CurriculumTemperature")
    return fixed


class CurriculumTemperature(nn.Module):
    """τ for this step: a 0-dim tensor (global) or ``[N]`` (instance), carrying the reversed gradient."""

    def __init__(self, settings: CurriculumSettings, num_classes: int) -> None:
        super().__init__()
        self.settings = settings
        if settings.mode == "global":
            self.predictor: nn.Module = GlobalTemperature(settings.theta_init)
        else:
            self.predictor = InstanceTemperature(num_classes, settings.instance_hidden, settings.theta_init)
        self._last_temperature: Tensor | None = None
        self._last_lambda: float | None = None

    def reversal_weight(self, epoch: int) -> float:
        """λ for a 0-based trainer epoch (the official loop's epoch is this + 1)."""
        s = self.settings
        return cosine_lambda(epoch + 1, s.cosine_epochs, s.lambda_start, s.lambda_end)

    def forward(self, teacher_logits: Tensor, student_logits: Tensor, epoch: int) -> Tensor:
        weight = self.reversal_weight(epoch)
        t_pred = self.predictor(teacher_logits, student_logits, weight)
        tau = self.settings.t_start + self.settings.t_end * torch.sigmoid(t_pred)
        self._last_temperature, self._last_lambda = tau.detach().mean(), weight
        return tau

    def signals(self) -> dict[str, float]:
        if self._last_temperature is None or self._last_lambda is None:
            return {}
        return {"temperature": float(self._last_temperature), "grl_lambda": self._last_lambda}
