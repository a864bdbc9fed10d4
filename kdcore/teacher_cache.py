"""Teacher-output reuse: a frozen teacher gives the same logits for the same input, so compute once.

Rows are keyed by (dataset index, augmentation variant). Without augmentation every epoch repeats
the same inputs and the teacher runs only in the first epoch. Augmented batches whose variant is
not known (no ``variant`` on the batch) are computed every time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdcore.data.loader import Batch


class TeacherOutputCache:
    def __init__(self, num_items: int, num_classes: int, num_teachers: int, variants: int = 1, device: torch.device | None = None) -> None:
        device = device or torch.device("cpu")
        self.values = torch.zeros(num_teachers, num_items, variants, num_classes, device=device)
        self.filled = torch.zeros(num_teachers, num_items, variants, dtype=torch.bool, device=device)
        self.hits = 0
        self.misses = 0

    def _variant(self, batch: Batch) -> Tensor | None:
        if batch.augment is None:
            return torch.zeros_like(batch.indices)
        return getattr(batch.augment, "variant", None)

    def logits(self, teacher_index: int, teacher: nn.Module, batch: Batch) -> Tensor:
        variant = self._variant(batch)
        if variant is None:
            self.misses += len(batch.indices)
            with torch.inference_mode():
                return teacher(batch.images).float()
        rows = batch.indices.to(self.values.device)
        variant = variant.to(self.values.device)
        known = self.filled[teacher_index, rows, variant]
        if not bool(known.all()):
            todo = (~known).nonzero().squeeze(1)
            with torch.inference_mode():
                fresh = teacher(batch.images[todo.to(batch.images.device)]).float().to(self.values.device)
            self.values[teacher_index, rows[todo], variant[todo]] = fresh
            self.filled[teacher_index, rows[todo], variant[todo]] = True
        self.hits += int(known.sum())
        self.misses += int((~known).sum())
        return self.values[teacher_index, rows, variant].to(batch.images.device)

    @property
    def hit_rate(self) -> float:
        return self.hits / max(1, self.hits + self.misses)
