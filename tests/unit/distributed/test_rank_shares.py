"""Each rank trains on its share of every global batch of the deterministic plan, augmented as in one process."""

import pytest
import torch

from kdcore.data.images import ImageSet
from kdcore.data.loader import BatchPlan, TrainingBatches
from kdcore.errors import BadSpec
from kdcore.methods.bake import ClassBalancedBatchPlan

CPU = torch.device("cpu")


def images(n: int = 48) -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, 16, 16), generator=generator, dtype=torch.uint8), torch.arange(n) % 4, [str(c) for c in range(4)])


@pytest.mark.parametrize("plan", [BatchPlan(images().labels, 12, 7), ClassBalancedBatchPlan(images().labels, 12, 7, intra_imgs=2)], ids=["plain", "bake"])
def test_shares_of_two_ranks_are_the_single_process_batch(plan):
    data = images()
    whole = list(TrainingBatches(data, plan, CPU, augment=True).epoch(1))
    shares = [list(TrainingBatches(data, plan, CPU, augment=True, rank=rank, ranks=2).epoch(1)) for rank in range(2)]
    assert len(whole) == len(shares[0]) == len(shares[1]) == plan.steps_per_epoch()
    for step, batch in enumerate(whole):
        parts = [shares[rank][step] for rank in range(2)]
        positions = torch.cat([plan.rank_positions(len(batch.indices), rank, 2) for rank in range(2)])
        assert sorted(positions.tolist()) == list(range(len(batch.indices)))
        assert torch.equal(torch.cat([p.indices for p in parts]), batch.indices[positions])
        torch.testing.assert_close(torch.cat([p.images for p in parts]), batch.images[positions], rtol=0, atol=0)
        assert torch.equal(torch.cat([p.labels for p in parts]), batch.labels[positions])


def test_bake_shares_keep_each_anchor_with_its_same_class_partners():
    plan = ClassBalancedBatchPlan(images().labels, 12, 7, intra_imgs=2)
    batch = plan.batches(0)[0]
    for rank in range(2):
        share = batch[plan.rank_positions(len(batch), rank, 2)]
        anchors, partners = share[:2], share[2:].view(2, 2)
        assert torch.equal(plan.labels[partners], plan.labels[anchors][:, None].expand(2, 2))


def test_a_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(BadSpec, match="multiple of 5"):
        BatchPlan(images().labels, 12, 0).rank_positions(12, 0, 5)
