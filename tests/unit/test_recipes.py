"""Augmentation recipes from torchvision transforms.v2: seeded per sample, the trainer's random stream untouched."""

from __future__ import annotations

import torch

from kdcore.data.images import ImageSet
from kdcore.data.loader import BatchPlan, TrainingBatches
from kdcore.data.recipes import augment_samples, decode_size, eval_ops, train_ops

CPU = torch.device("cpu")


def _images(n: int = 24, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_each_sample_draws_from_its_own_seed_and_the_global_stream_is_left_alone():
    ops = train_ops("cifar", (3, 16, 16))
    images = _images(8)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = augment_samples(images, ops, seed=1, epoch=0, step=0)
    assert torch.equal(torch.rand(1), expected_next)
    assert torch.equal(first, augment_samples(images, ops, seed=1, epoch=0, step=0))
    assert not torch.equal(first, augment_samples(images, ops, seed=1, epoch=1, step=0))
    tail = augment_samples(images[4:], ops, seed=1, epoch=0, step=0, first_position=4)
    assert torch.equal(tail, first[4:])


def test_cifar_pads_four_pixels_and_flips():
    ops = train_ops("cifar", (3, 32, 32))
    image = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    views = augment_samples([image] * 64, ops, seed=0, epoch=0, step=0)
    zero_rows = (views == 0).all(dim=(1, 3)).sum(dim=1)
    assert int(zero_rows.max()) <= 4 and int(zero_rows.max()) >= 1


def test_imagenet_trains_on_random_resized_crops_and_evaluates_a_centre_crop_at_0_875():
    assert decode_size("imagenet", (3, 224, 224)) is None and decode_size("cifar", (3, 32, 32)) == (32, 32)
    full = torch.arange(300 * 400, dtype=torch.float32).reshape(1, 300, 400).div(300 * 400 / 255).to(torch.uint8).expand(3, -1, -1)
    crops = augment_samples([full] * 4, train_ops("imagenet", (3, 224, 224)), seed=0, epoch=0, step=0)
    assert crops.shape == (4, 3, 224, 224) and len({c.float().mean().item() for c in crops}) == 4
    centre = eval_ops("imagenet", (3, 224, 224))(full)
    assert centre.shape == (3, 224, 224)
    assert eval_ops("cifar", (3, 32, 32)) is None and train_ops("none", (3, 32, 32)) is None


def test_in_memory_batches_with_a_per_sample_recipe_replay_and_split_over_ranks():
    data = ImageSet(_images(), torch.arange(24) % 4, list("abcd"))
    plan, ops = BatchPlan(data.labels, 8, 2), train_ops("imagenet", (3, 16, 16))
    full = list(TrainingBatches(data, plan, CPU, False, sample_ops=ops).epoch(0))
    resumed = list(TrainingBatches(data, plan, CPU, False, sample_ops=ops).epoch(0, start_step=1))
    ranks = [list(TrainingBatches(data, plan, CPU, False, rank=r, ranks=2, sample_ops=ops).epoch(0)) for r in range(2)]
    for a, b in zip(full[1:], resumed, strict=True):
        assert torch.equal(a.images, b.images)
    for step, batch in enumerate(full):
        assert torch.equal(torch.cat([ranks[0][step].images, ranks[1][step].images]), batch.images)
    assert not torch.equal(full[0].images, data.images[full[0].indices].float() / 255)
