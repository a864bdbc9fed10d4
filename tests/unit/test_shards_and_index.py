"""WebDataset shards written from a tree read back sample for sample; registration indexes refuse broken sets."""

from __future__ import annotations

import json
import tarfile

import pytest
from image_trees import ShardedDigits, digits_tree, sharded_digits

from kdcore.data import remote
from kdcore.data.catalog import index_local_tree, index_uri, verify_sample
from kdcore.data.imagefolder import scan
from kdcore.data.index import INDEX_FILE, DatasetIndex, SampleTable, sample_parts
from kdcore.data.samples import SampleReader
from kdcore.data.shards import index_tar
from kdcore.errors import BadDataset


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> ShardedDigits:
    return sharded_digits(tmp_path_factory.mktemp("data"), per_class=12, shard_bytes=20_000)


def test_webdataset_naming_splits_the_key_at_the_basenames_first_dot():
    assert sample_parts("a/b.c/000001.seg.png") == ("a/b.c/000001", "seg.png")
    assert sample_parts("000002.cls") == ("000002", "cls")


def test_shards_hold_every_image_once_shuffled_across_shards_with_labels(digits):
    out, index = digits.shards, digits.index
    items = scan(digits.tree)
    assert index.counts() == {split: len(entries) for split, entries in items.items()}
    train = index.splits["train"].shards
    assert len(train) >= 3 and all(abs(s.size - (out / s.name).stat().st_size) == 0 for s in train)
    assert all(len(set(s.labels)) > 3 for s in train[:-1]), "each full shard mixes classes"
    originals = sorted((path.read_bytes(), label) for path, label in items["train"])
    reader = SampleReader(index, "train")
    read_back = sorted((reader.read(i), int(reader.table.label[i])) for i in range(len(reader)))
    assert read_back == originals


def test_a_streamed_tar_indexes_to_the_entry_the_writer_recorded(digits):
    out, index = digits.shards, digits.index
    entry = index.splits["val"].shards[0]
    with open(out / entry.name, "rb") as handle:
        assert index_tar(handle, entry.name, entry.size) == entry
    with tarfile.open(out / entry.name) as tar:
        names = tar.getnames()
    assert names[0].endswith(".png") and names[1] == names[0].rsplit(".", 1)[0] + ".cls"


def test_registration_takes_index_json_after_checking_it_and_reads_shards_without_it(digits, tmp_path):
    out, index = digits.shards, digits.index
    taken = index_uri(out.as_uri(), "webdataset")
    assert taken.base_uri == out.as_uri() and taken.counts() == index.counts() and taken.classes == index.classes
    (out / INDEX_FILE).rename(tmp_path / INDEX_FILE)
    try:
        walked = index_uri(out.as_uri(), "webdataset")
    finally:
        (tmp_path / INDEX_FILE).rename(out / INDEX_FILE)
    assert walked.counts() == index.counts() and walked.classes == [str(c) for c in range(10)]
    assert verify_sample(walked, 20) == 20


def test_an_index_that_disagrees_with_the_shards_is_refused(digits, tmp_path):
    out, index = digits.shards, digits.index
    copy = tmp_path / "copy"
    for shard in index.splits["train"].shards + index.splits["val"].shards:
        (copy / shard.name).parent.mkdir(parents=True, exist_ok=True)
        (copy / shard.name).write_bytes((out / shard.name).read_bytes())
    data = json.loads((out / INDEX_FILE).read_text())
    data["splits"]["train"]["shards"][0]["size"] += 1
    (copy / INDEX_FILE).write_text(json.dumps(data))
    with pytest.raises(BadDataset, match="bytes but index.json says"):
        index_uri(copy.as_uri(), "webdataset")
    data["splits"]["train"]["shards"][0]["name"] = "../../etc/passwd"
    with pytest.raises(ValueError, match="relative path"):
        DatasetIndex.model_validate(data)


def test_imagefolder_by_reference_lists_objects_and_refuses_broken_layouts(digits, tmp_path):
    tree = digits.tree
    index = index_uri(tree.as_uri(), "imagefolder")
    assert index.format == "imagefolder" and index.shard_count() == 0 and len(index.classes) == 10
    assert index.counts() == {s: len(v) for s, v in scan(tree).items()}
    assert verify_sample(index, 6) == 6

    broken = digits_tree(tmp_path / "b", size=8, per_class=2)
    (broken / "train" / "empty").mkdir()
    (broken / "val" / "empty").mkdir()
    with pytest.raises(BadDataset, match="empty"):
        index_uri(broken.as_uri(), "imagefolder")
    for folder in (broken / "train" / "empty", broken / "val" / "empty"):
        folder.rmdir()
    for file in (broken / "val").rglob("*.png"):
        file.unlink()
    with pytest.raises(BadDataset, match="val/"):
        index_uri(broken.as_uri(), "imagefolder")
    with pytest.raises(BadDataset, match="no .tar shards"):
        index_uri(tree.as_uri(), "webdataset")


def test_a_sample_that_does_not_decode_is_named_by_shard_and_key(digits, tmp_path):
    out, index = digits.shards, digits.index
    shard = index.splits["val"].shards[0]
    bad = tmp_path / "bad.tar"
    bad.write_bytes((out / shard.name).read_bytes())
    with open(bad, "r+b") as handle:
        handle.seek(shard.offsets[0])
        handle.write(b"\x00" * shard.sizes[0])
    broken = index.model_copy(update={"base_uri": tmp_path.as_uri()})
    broken.splits["val"].shards[0] = shard.model_copy(update={"name": "bad.tar"})
    reader = SampleReader(broken, "val")
    with pytest.raises(BadDataset, match=rf"shard 'bad.tar', sample '{shard.keys[0]}'.*does not decode"):
        reader.decode(0, 3)


def test_symbolic_links_in_a_registered_folder_are_refused(digits, tmp_path):
    linked = digits_tree(tmp_path / "l", size=8, per_class=2)
    (linked / "train" / "0" / "escape.png").symlink_to(next(digits.tree.rglob("*.png")))
    with pytest.raises(BadDataset, match="symbolic link"):
        index_uri(linked.as_uri(), "imagefolder")
    with pytest.raises(BadDataset, match="symbolic link"):
        index_local_tree(linked)


def test_sample_table_is_compact_and_describes_samples(digits):
    index = digits.index
    table = SampleTable.of(index.splits["train"])
    assert table.offset.dtype.itemsize == 8 and table.shard.dtype.itemsize == 4
    assert table.describe(0).startswith("shard 'train/shard-")


def test_remote_join_and_local_paths():
    assert remote.join("s3://b/p/", "/train/x.tar") == "s3://b/p/train/x.tar"
    assert str(remote.local_path("file:///tmp/a%20b/c")) == "/tmp/a b/c"
    assert remote.local_path("s3://bucket/key") is None
