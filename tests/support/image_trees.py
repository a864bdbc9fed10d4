"""ImageFolder trees on disk, made from scikit-learn's digits (``kdcore.bench.image_folders``), for the streamed-data tests."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

from kdcore.bench.image_folders import digits_tree
from kdcore.data.index import DatasetIndex
from kdcore.data.shards import write_shards


class ShardedDigits(NamedTuple):
    """A digits tree, the folder of its WebDataset shards, and their index (``base_uri`` pointing at that folder)."""

    tree: Path
    shards: Path
    index: DatasetIndex


def sharded_digits(folder: Path, per_class: int, shard_bytes: int, size: int = 12) -> ShardedDigits:
    """A digits tree under ``folder/tree`` and its WebDataset shards under ``folder/shards``."""
    tree = digits_tree(folder / "tree", size, per_class)
    index = write_shards(tree, folder / "shards", shard_bytes)
    return ShardedDigits(tree, folder / "shards", index.model_copy(update={"base_uri": (folder / "shards").as_uri()}))


def zip_tree(root: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(root.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(root).as_posix())
    return path
