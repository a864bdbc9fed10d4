"""One update of a data-free method's generator by its own optimizer, inside the distiller's ``forward``.

The trainer steps the student only (on the generated images, detached), so the generator's loss never
reaches it: ``dafl`` and ``datafree_generative`` step their generator themselves, before the student's loss.
"""

from __future__ import annotations

import torch
from torch import Tensor


def step_generator(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """Backpropagate ``loss`` and take one step of ``optimizer``, gradients cleared first."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
