"""Batches are a pure function of (seed, epoch, step) and say which epoch they belong to."""

import torch

from kdcore.data.augment import CropFlip, apply_crop_flip, crop_padding
from kdcore.data.images import ImageSet
from kdcore.data.loader import BatchPlan, TrainingBatches, epoch_order

CPU = torch.device("cpu")


def _images(n: int = 40, size: int = 16, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n) % 10, [str(c) for c in range(10)])


def _same(a, b) -> None:
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.labels, b.labels)


def test_epoch_order_is_a_seeded_permutation_that_changes_each_epoch():
    first, again, second = epoch_order(50, 3, 0), epoch_order(50, 3, 0), epoch_order(50, 3, 1)
    assert torch.equal(first, again) and not torch.equal(first, second)
    assert sorted(first.tolist()) == list(range(50))


def test_last_partial_batch_is_dropped():
    batches = BatchPlan(torch.zeros(45, dtype=torch.long), 8, 0).batches(0)
    assert len(batches) == 5 and all(len(b) == 8 for b in batches)


def test_batches_replay_exactly_and_resume_mid_epoch():
    data = _images()
    plan = BatchPlan(data.labels, 8, 5)
    full = list(TrainingBatches(data, plan, CPU, augment=True).epoch(2))
    replay = list(TrainingBatches(data, plan, CPU, augment=True).epoch(2))
    resumed = list(TrainingBatches(data, plan, CPU, augment=True).epoch(2, start_step=3))
    for a, b in zip(full, replay, strict=True):
        _same(a, b)
    for a, b in zip(full[3:], resumed, strict=True):
        _same(a, b)
    assert full[0].augment is not None and all(batch.epoch == 2 for batch in full)


def test_without_augmentation_images_are_the_stored_ones():
    data = _images()
    batch = next(TrainingBatches(data, BatchPlan(data.labels, 8, 0), CPU, augment=False).epoch(0))
    assert batch.augment is None
    torch.testing.assert_close(batch.images, data.images[batch.indices].float() / 255, rtol=0, atol=0)


def test_centre_crop_is_identity_and_flip_mirrors():
    images = torch.rand(2, 3, 16, 16)
    pad = crop_padding(16)
    centre = torch.full((2,), pad)
    out = apply_crop_flip(images, CropFlip(centre, centre, torch.tensor([False, True])))
    torch.testing.assert_close(out[0], images[0], rtol=0, atol=0)
    torch.testing.assert_close(out[1], images[1].flip(-1), rtol=0, atol=0)
