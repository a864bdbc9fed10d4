"""The streamed loader: batches fixed by (seed, epoch, step) whatever the workers, exact resume, rank slices, named failures."""

from __future__ import annotations

import os

import pytest
import torch
from image_trees import ShardedDigits, sharded_digits

from kdcore.data import imagefolder, remote
from kdcore.data.augment import seeded_generator
from kdcore.data.catalog import index_local_tree
from kdcore.data.index import DatasetIndex
from kdcore.data.loader import BatchPlan, TrainingBatches
from kdcore.data.loader_pool import LoaderPool
from kdcore.data.samples import SampleReader
from kdcore.data.stream import SHARD_ORDER_STREAM, ShardedPlan, StreamedBatches, StreamedSplit
from kdcore.errors import BadDataset

CPU = torch.device("cpu")
SIZE = (3, 12, 12)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> ShardedDigits:
    return sharded_digits(tmp_path_factory.mktemp("data"), per_class=10, shard_bytes=12_000)


POOLS: list[LoaderPool] = []


@pytest.fixture(autouse=True)
def _close_pools():
    yield
    while POOLS:
        POOLS.pop().close()


def _split(index: DatasetIndex, workers: int, recipe: str = "cifar", split: str = "train") -> StreamedSplit:
    POOLS.append(LoaderPool(workers))
    return StreamedSplit(SampleReader(index, split), index.classes, SIZE, recipe, POOLS[-1], split)


def _plan(split: StreamedSplit, seed: int = 3) -> ShardedPlan:
    return ShardedPlan(split.labels, 8, seed, torch.from_numpy(split.reader.table.shard).long(), window_shards=2)


def _same(a, b) -> None:
    assert torch.equal(a.indices, b.indices) and torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)


def test_sharded_plan_is_a_seeded_permutation_read_window_by_window(digits):
    split = _split(digits.index, 0)
    plan = _plan(split)
    order, again, other = plan.order(0), plan.order(0), plan.order(1)
    assert torch.equal(order, again) and not torch.equal(order, other)
    assert sorted(order.tolist()) == list(range(len(split)))
    shard_of = split.reader.table.shard
    window_sizes = []
    position = 0
    shard_order = torch.randperm(len(plan.members), generator=seeded_generator(3, 0, SHARD_ORDER_STREAM)).tolist()
    for start in range(0, len(shard_order), 2):
        members = set(shard_order[start : start + 2])
        size = sum(len(plan.members[s]) for s in members)
        assert {int(shard_of[i]) for i in order[position : position + size]} == members
        position += size
        window_sizes.append(size)
    assert position == len(split) and len(window_sizes) >= 2


def test_batches_do_not_depend_on_the_number_of_workers_and_resume_exactly(digits):
    serial = list(StreamedBatches(_split(digits.index, 0), _plan(_split(digits.index, 0)), CPU).epoch(1))
    parallel_split = _split(digits.index, 2)
    parallel = list(StreamedBatches(parallel_split, _plan(parallel_split), CPU).epoch(1))
    resumed = list(StreamedBatches(parallel_split, _plan(parallel_split), CPU).epoch(1, start_step=3))
    assert len(serial) == len(parallel) == len(resumed) + 3 == len(parallel_split) // 8
    for a, b in zip(serial, parallel, strict=True):
        _same(a, b)
    for a, b in zip(serial[3:], resumed, strict=True):
        _same(a, b)
    assert serial[0].images.dtype == torch.float32 and serial[0].images.shape[1:] == SIZE
    assert not torch.equal(serial[0].images, list(StreamedBatches(parallel_split, _plan(parallel_split), CPU).epoch(2))[0].images)


def test_rank_slices_put_together_are_the_single_device_batch(digits):
    split = _split(digits.index, 0)
    whole = list(StreamedBatches(split, _plan(split), CPU).epoch(0))
    ranks = [list(StreamedBatches(split, _plan(split), CPU, rank=r, world_size=2).epoch(0)) for r in range(2)]
    for step, batch in enumerate(whole):
        glued = torch.cat([ranks[0][step].images, ranks[1][step].images])
        assert torch.equal(torch.cat([ranks[0][step].indices, ranks[1][step].indices]), batch.indices)
        torch.testing.assert_close(glued, batch.images, rtol=0, atol=0)


def test_streamed_imagefolder_without_augmentation_trains_on_the_in_memory_batches(digits):
    tree = digits.tree
    index = index_local_tree(tree)
    streamed = _split(index, 2, recipe="none")
    memory = imagefolder.load_split(tree, "train", SIZE)
    plan = BatchPlan(memory.labels, 8, 5)
    for a, b in zip(StreamedBatches(streamed, plan, CPU).epoch(0), TrainingBatches(memory, plan, CPU, augment=False).epoch(0), strict=True):
        _same(a, b)
    val = _split(index, 0, recipe="none", split="val")
    images, labels = next(val.evaluation_batches(64, CPU))
    stored = imagefolder.load_split(tree, "val", SIZE)
    torch.testing.assert_close(images, stored.images[:64].float() / 255, rtol=0, atol=0)
    assert torch.equal(labels, stored.labels[:64])


def test_a_broken_sample_in_a_worker_fails_the_epoch_naming_shard_and_sample(digits, tmp_path):
    entry = digits.index.splits["train"].shards[1]
    broken_shard = tmp_path / "train" / "shard-000001.tar"
    broken_shard.parent.mkdir(parents=True)
    broken_shard.write_bytes(remote.read_all(remote.join(digits.index.base_uri, entry.name)))
    with open(broken_shard, "r+b") as handle:
        handle.seek(entry.offsets[2])
        handle.write(b"\xff" * entry.sizes[2])
    index = digits.index.model_copy(deep=True)
    for shard in index.splits["train"].shards:
        if shard.name != entry.name:
            (tmp_path / shard.name).write_bytes(remote.read_all(remote.join(digits.index.base_uri, shard.name)))
    index.base_uri = tmp_path.as_uri()
    split = _split(index, 2)
    with pytest.raises(BadDataset, match=rf"shard 'train/shard-000001.tar', sample '{entry.keys[2]}'"):
        for _ in StreamedBatches(split, _plan(split), CPU).epoch(0):
            pass


def _stamping(split: StreamedSplit, stamp) -> StreamedSplit:
    """``split`` with every decoded image filled with ``stamp()``, computed in whichever process decodes it."""
    split.reader.decode = lambda i, channels, size=None: torch.full((channels, *SIZE[1:]), stamp(), dtype=torch.uint8)
    return split


def test_loader_workers_run_one_torch_thread(digits):
    split = _stamping(_split(digits.index, 2, recipe="none"), torch.get_num_threads)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        images, _ = zip(*split.evaluation_batches(4, CPU), strict=True)
    finally:
        torch.set_num_threads(before)
    assert {round(float(batch.max()) * 255) for batch in images} == {1}


def test_the_workers_are_forked_once_for_every_epoch_and_evaluation(digits):
    split = _stamping(_split(digits.index, 2, recipe="none"), lambda: os.getpid() % 251)
    batches = StreamedBatches(split, _plan(split), CPU)
    pids = [{round(float(b.images.max()) * 255) for b in batches.epoch(epoch)} for epoch in (0, 1)]
    pids.append({round(float(images.max()) * 255) for images, _ in split.evaluation_batches(8, CPU)})
    assert pids[0] == pids[1] == pids[2] and len(pids[0]) == 2 and os.getpid() % 251 not in pids[0]
