"""Index a dataset that lies behind a URI, without moving its images: what registration and ``stream`` jobs read.

``imagefolder``: one object listing (1,000 names per S3 request) gives classes, splits and sizes.
``webdataset``: the ``.tar`` shards under ``train/`` and ``val/`` (or named ``train-*.tar`` /
``val-*.tar``); when an ``index.json`` written by :func:`kdcore.data.shards.write_shards` lies
beside them it is taken after checking it against the listing (every shard present, sizes
equal), otherwise every shard is read once, front to back, for its headers and labels.

:func:`verify_sample` then decodes a spread of samples across shards, so a broken set is refused
at registration; the count it returns is the dataset's ``verified``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kdcore.data import imagefolder, remote
from kdcore.data.index import INDEX_FILE, SPLITS, DatasetIndex, ShardEntry, SplitIndex, load_classes
from kdcore.data.samples import SampleReader
from kdcore.data.shards import index_tar
from kdcore.errors import BadDataset

CLASSES_FILE = "classes.json"
VERIFY_SAMPLES = 64


def shard_split(name: str) -> str | None:
    """The split a shard belongs to: ``train/…/x.tar`` or ``train-x.tar`` / ``train_x.tar`` at the top."""
    first, _, rest = name.partition("/")
    if not name.endswith(".tar"):
        return None
    if rest and first in SPLITS:
        return first
    if not rest:
        return next((s for s in SPLITS if first.startswith((s + "-", s + "_"))), None)
    return None


def _listing(uri: str, endpoint_url: str | None) -> list[remote.Listed]:
    listing = remote.list_objects(uri, endpoint_url)
    links = [item.name for item in listing if item.size < 0]
    if links:
        raise BadDataset(f"{links[0]!r} is a symbolic link; a registered dataset holds plain files only")
    if not listing:
        raise BadDataset(f"nothing lies under {uri}; upload the dataset there first")
    return listing


def index_imagefolder(uri: str, listing: list[remote.Listed]) -> DatasetIndex:
    classes, items = imagefolder.layout(item.name for item in listing)
    sizes = {item.name: item.size for item in listing}
    splits = {}
    for split, entries in items.items():
        names = [name for name, _ in entries]
        object_sizes = [sizes[name] for name in names]
        shard = ShardEntry(name="", size=sum(object_sizes), keys=names, labels=[label for _, label in entries], offsets=[0] * len(names), sizes=object_sizes)
        splits[split] = SplitIndex(shards=[shard])
    return DatasetIndex(format="imagefolder", base_uri=uri, classes=classes, splits=splits)


def index_webdataset(uri: str, listing: list[remote.Listed], endpoint_url: str | None) -> DatasetIndex:
    shards = {item.name: item.size for item in listing if shard_split(item.name) is not None}
    compressed = [item.name for item in listing if item.name.endswith((".tar.gz", ".tgz"))]
    if not shards:
        hint = f" ({compressed[0]!r} is compressed: shards must be plain .tar)" if compressed else ""
        raise BadDataset(f"no .tar shards under train/ and val/ at {uri}{hint}; lay shards out as train/*.tar and val/*.tar")
    names = {item.name for item in listing}
    if INDEX_FILE in names:
        return _checked_index(uri, remote.read_all(remote.join(uri, INDEX_FILE), endpoint_url), shards)
    splits: dict[str, list[ShardEntry]] = {s: [] for s in SPLITS}
    for name, size in shards.items():
        split = shard_split(name)
        assert split is not None  # shards holds only names that have a split
        with remote.open_stream(remote.join(uri, name), endpoint_url) as stream:
            splits[split].append(index_tar(stream, name, size))
    missing = [s for s in SPLITS if not splits[s]]
    if missing:
        raise BadDataset(f"no shards for the {' or '.join(repr(m + '/') for m in missing)} split at {uri}; a dataset needs train and val shards")
    labels = [label for entries in splits.values() for entry in entries for label in entry.labels]
    classes_text = remote.read_all(remote.join(uri, CLASSES_FILE), endpoint_url) if CLASSES_FILE in names else None
    return DatasetIndex(
        format="webdataset", base_uri=uri, classes=load_classes(classes_text, labels), splits={s: SplitIndex(shards=e) for s, e in splits.items()}
    )


def _checked_index(uri: str, text: bytes, listed: dict[str, int]) -> DatasetIndex:
    try:
        index = DatasetIndex.model_validate_json(text)
    except ValueError as exc:
        raise BadDataset(f"{INDEX_FILE} at {uri} is not a dataset index: {str(exc)[:300]}") from None
    if index.format != "webdataset":
        raise BadDataset(f"{INDEX_FILE} at {uri} describes an {index.format} dataset; register it with that format")
    for split in index.splits.values():
        for shard in split.shards:
            if shard.name not in listed:
                raise BadDataset(f"{INDEX_FILE} lists shard {shard.name!r}, which is not at {uri}")
            if listed[shard.name] != shard.size:
                raise BadDataset(f"shard {shard.name!r} is {listed[shard.name]} bytes but {INDEX_FILE} says {shard.size}; write the index again")
    return index.model_copy(update={"base_uri": uri})


def index_uri(uri: str, fmt: str, endpoint_url: str | None = None) -> DatasetIndex:
    """The checked index of the dataset under ``uri`` (a folder URI); a :class:`BadDataset` says what is wrong."""
    listing = _listing(uri, endpoint_url)
    index = index_imagefolder(uri, listing) if fmt == "imagefolder" else index_webdataset(uri, listing, endpoint_url)
    index.check()
    return index


def index_local_tree(root: Path) -> DatasetIndex:
    """An extracted ImageFolder tree as an ``imagefolder`` index, so a ``stream`` job can read it too."""
    root = imagefolder.find_root(root).resolve()
    index = index_imagefolder(
        root.as_uri(), [remote.Listed(name, 0 if name.endswith("/") else (root / name).stat().st_size) for name in imagefolder.tree_names(root)]
    )
    index.check()
    return index


def verify_sample(index: DatasetIndex, count: int = VERIFY_SAMPLES, endpoint_url: str | None = None) -> int:
    """Decode up to ``count`` samples spread evenly over each split's samples (so over its shards); how many were decoded."""
    verified = 0
    per_split = math.ceil(count / len(index.splits))
    for split in index.splits:
        reader = SampleReader(index, split, endpoint_url=endpoint_url)
        picks = np.unique(np.linspace(0, len(reader) - 1, min(per_split, len(reader))).round().astype(np.int64))
        for i in picks.tolist():
            reader.decode(i, 3)
            verified += 1
    return verified
