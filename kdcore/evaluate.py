"""Top-1/top-5 on a held-out split, computed the same way for students, teachers and exported files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.images import ImageSet
from kdcore.data.loader import evaluation_batches
from kdcore.losses import accuracy_counts

if TYPE_CHECKING:
    from kdcore.data.stream import StreamedSplit


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    loss: float
    count: int


def evaluate(model: Callable[[Tensor], Tensor], data: ImageSet | StreamedSplit, batch_size: int = 256, device: torch.device | None = None) -> Accuracy:
    """Accuracy of ``model`` (anything mapping [0,1] images to logits) on ``data``; fractions in [0,1]."""
    device = device or torch.device("cpu")
    if isinstance(model, torch.nn.Module):
        model.eval()
    correct1 = correct5 = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for images, labels in evaluation_batches(data, batch_size, device):
            logits = model(images).float()
            top1, top5 = accuracy_counts(logits, labels)
            correct1 += int(top1)
            correct5 += int(top5)
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
    n = max(1, len(data))
    return Accuracy(correct1 / n, correct5 / n, loss_sum / n, len(data))
