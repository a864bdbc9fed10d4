"""Steps of a method's distiller as its tests take them: a training step with its backward pass, or an eval step to recompute the losses from."""

from __future__ import annotations

import torch
from torch import Tensor

from kdcore.data.loader import Batch
from kdcore.methods import StepInfo
from kdcore.methods.base import Distiller


def training_step(distiller: Distiller, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
    """``distiller``'s outputs on ``batch`` in training mode, the loss backpropagated, so the gradients say what the method trains."""
    distiller.train()
    out = distiller(batch, step)
    out["loss"].backward()
    return out


def eval_step(distiller: Distiller, batch: Batch, step: StepInfo) -> tuple[dict[str, Tensor], Tensor, list[Tensor]]:
    """``distiller``'s outputs on ``batch`` in eval mode, and the student's logits and stage features from a second pass without gradients.

    BatchNorm in eval mode makes the second pass reproduce the first, so a test can recompute the method's losses from it.
    """
    distiller.eval()
    out = distiller(batch, step)
    with torch.no_grad():
        logits, features = distiller._student_features[0](batch.images)
    return out, logits, features
