"""Shards on S3 (a real S3-compatible server process): read through a capped local cache, or by ranged reads."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from image_trees import digits_tree
from s3server import bucket_client, s3_server

from kdcore.data import remote
from kdcore.data.catalog import index_uri, verify_sample
from kdcore.data.samples import SampleReader
from kdcore.data.shard_cache import ShardCache
from kdcore.data.shards import write_shards
from kdcore.errors import BadDataset

PREFIX = "tenants/acme/datasets/digits"


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3")
    out = root / "shards"
    index = write_shards(digits_tree(root / "tree", size=12, per_class=8), out, shard_bytes=10_000)
    with s3_server(root) as env:
        client = bucket_client(env)
        for file in out.rglob("*"):
            if file.is_file():
                client.upload_file(str(file), "distillery", f"{PREFIX}/{file.relative_to(out).as_posix()}")
        yield env, index, f"s3://distillery/{PREFIX}/"


@pytest.fixture
def endpoint(bucket, monkeypatch):
    env, _, _ = bucket
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env["AWS_ENDPOINT_URL"]


def test_registration_by_s3_uri_indexes_and_verifies(bucket, endpoint):
    _, written, uri = bucket
    index = index_uri(uri, "webdataset", endpoint)
    assert index.base_uri == uri and index.counts() == written.counts() and index.shard_count() == written.shard_count()
    assert verify_sample(index, 8, endpoint) == 8


def test_cached_and_ranged_reads_give_the_same_bytes_and_the_cache_stays_under_its_cap(bucket, endpoint, tmp_path):
    _, written, uri = bucket
    index = written.model_copy(update={"base_uri": uri})
    sizes = [s.size for s in index.splits["train"].shards]
    cap = 2 * max(sizes) + 1
    cache = ShardCache(tmp_path / "cache", cap, endpoint)
    cached, ranged = SampleReader(index, "train", cache, endpoint), SampleReader(index, "train", None, endpoint)
    for i in range(0, len(cached), 7):
        assert cached.read(i) == ranged.read(i)
        assert cache.held_bytes() <= cap
    assert len(list((tmp_path / "cache").glob("*.shard"))) <= 2


def _fetch(folder: str, uri: str, size: int, endpoint: str, log: str) -> str:
    real = remote.download

    def counted(*args, **kwargs) -> None:
        with open(log, "a") as handle:
            handle.write("download\n")
        real(*args, **kwargs)

    remote.download = counted  # this pool process only
    return str(ShardCache(Path(folder), 10 * size, endpoint).local(uri, size))


def test_processes_fetching_the_same_shard_download_it_once(bucket, endpoint, tmp_path):
    _, written, uri = bucket
    shard = written.splits["val"].shards[0]
    shard_uri, log = remote.join(uri, shard.name), tmp_path / "downloads.log"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        paths = pool.starmap(_fetch, [(str(tmp_path / "cache"), shard_uri, shard.size, endpoint, str(log))] * 3)
    assert len(set(paths)) == 1 and Path(paths[0]).stat().st_size == shard.size
    assert log.read_text().splitlines() == ["download"]


def test_a_shard_that_changed_size_since_registration_is_a_bad_dataset(bucket, endpoint, tmp_path):
    _, written, uri = bucket
    shard = written.splits["val"].shards[0]
    with pytest.raises(BadDataset, match="changed after registration"):
        ShardCache(tmp_path, 10**9, endpoint).local(remote.join(uri, shard.name), shard.size + 1)
    missing = written.model_copy(update={"base_uri": uri.replace("digits", "nothing-here")})
    with pytest.raises(BadDataset, match="could not be read"):
        SampleReader(missing, "val", ShardCache(tmp_path / "c2", 10**9, endpoint), endpoint).read(0)
