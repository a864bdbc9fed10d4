"""Augmentation recipes (``training.augment``) built from torchvision ``transforms.v2``, applied per sample.

* ``none``: the image resized to the input size.
* ``flip_crop``: zero-padded random crop (``crop_padding``: 4 px at 32 px, scaled) + horizontal flip.
* ``cifar``: the CIFAR recipe, pad 4 random crop + horizontal flip, whatever the size.
* ``imagenet``: RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3) + horizontal flip for training;
  for evaluation Resize of the shorter side to size/0.875, then CenterCrop (the standard 0.875 ratio).

Every sample's draw comes from its own seed, (seed, epoch, step, position in the global batch), so a
batch is the same whichever loader worker, device or resumed attempt builds it. ``v2`` draws from
torch's global generator, so draws run inside ``fork_rng``: the trainer's own random stream is not touched.

The teacher and the student of a step get the same tensor, so they always see the same view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2

from kdcore.data.augment import crop_padding, seeded_generator

RECIPES = ("none", "flip_crop", "cifar", "imagenet")
IMAGENET_CROP_RATIO = 0.875
CIFAR_PADDING = 4
RECIPE_STREAM = 5  # loader: order 1, per-step crops 2; augment: variant pool 3 and 4
SampleOps = Callable[[Tensor], Tensor]


def decode_size(recipe: str, input_size: Sequence[int]) -> tuple[int, int] | None:
    """The size a training image is decoded at before its random ops: the input size, or full size for ``imagenet``."""
    return None if recipe == "imagenet" else (int(input_size[1]), int(input_size[2]))


def train_ops(recipe: str, input_size: Sequence[int]) -> SampleOps | None:
    """The random ops of the recipe on one uint8 ``[C,H,W]`` image decoded at :func:`decode_size`; ``None`` for ``none``."""
    height, width = int(input_size[1]), int(input_size[2])
    if recipe == "flip_crop":
        return v2.Compose([v2.RandomCrop((height, width), padding=crop_padding(height)), v2.RandomHorizontalFlip()])
    if recipe == "cifar":
        return v2.Compose([v2.RandomCrop((height, width), padding=CIFAR_PADDING), v2.RandomHorizontalFlip()])
    if recipe == "imagenet":
        return v2.Compose([v2.RandomResizedCrop((height, width), antialias=True), v2.RandomHorizontalFlip()])
    return None


def eval_ops(recipe: str, input_size: Sequence[int]) -> SampleOps | None:
    """What turns a full-size image into an evaluation input; ``None`` where it is a plain resize to the input size."""
    if recipe != "imagenet":
        return None
    height, width = int(input_size[1]), int(input_size[2])
    return v2.Compose([v2.Resize(round(min(height, width) / IMAGENET_CROP_RATIO), antialias=True), v2.CenterCrop((height, width))])


def sample_seed(seed: int, epoch: int, step: int, position: int) -> int:
    return seeded_generator(seed, epoch, step, position, RECIPE_STREAM).initial_seed()


def augment_samples(images: Sequence[Tensor] | Tensor, ops: SampleOps, seed: int, epoch: int, step: int, first_position: int = 0) -> Tensor:
    """``ops`` on each image with its own seed; ``first_position`` is where ``images`` start in the global batch."""
    out = []
    with torch.random.fork_rng(devices=[]):
        for offset, image in enumerate(images):
            torch.manual_seed(sample_seed(seed, epoch, step, first_position + offset))
            out.append(ops(image))
    return torch.stack(out)
