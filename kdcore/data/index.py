"""A dataset too large to hold decoded, described so it can be read sample by sample: ``index.json``.

Two formats share one shape. ``webdataset``: WebDataset tar shards (``train/shard-000000.tar``,
members ``<key>.<image ext>`` and ``<key>.cls`` holding the label), each sample found by the byte
offset of its image inside its shard. ``imagefolder``: ``train/<class>/<image>`` objects, each
sample a whole object (one "shard" per split, named ``""``). Names are relative to the dataset's
``base_uri`` and may not leave it, so an index can only point inside the prefix that was checked.

On disk the per-sample columns are JSON lists; in a job they become numpy arrays
(:class:`SampleTable`): about 30 bytes a sample, shared copy-on-write by forked loader workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kdcore.errors import BadDataset

INDEX_FILE = "index.json"
SPLITS = ("train", "val")


def relative_name(name: str) -> str:
    """``name`` unchanged when it is a plain relative POSIX path; otherwise a :class:`ValueError`."""
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or ".." in path.parts or any(part.startswith("~") for part in path.parts):
        raise ValueError(f"{name!r} must be a relative path inside the dataset's prefix")
    return name


class ShardEntry(BaseModel):
    """One tar shard (or, for ``imagefolder``, the split's objects) and its samples, column by column."""

    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = Field(ge=0)
    keys: list[str]
    labels: list[int]
    offsets: list[int]
    sizes: list[int]

    @field_validator("name")
    @classmethod
    def _inside(cls, value: str) -> str:
        return relative_name(value) if value else value

    @model_validator(mode="after")
    def _columns_agree(self) -> ShardEntry:
        if not (len(self.keys) == len(self.labels) == len(self.offsets) == len(self.sizes)):
            raise ValueError(f"shard {self.name!r}: keys, labels, offsets and sizes differ in length")
        return self


class SplitIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shards: list[ShardEntry]

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self.shards)


class DatasetIndex(BaseModel):
    """``base_uri`` is empty in a file written next to its shards (names resolve against the file's folder)."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    format: Literal["imagefolder", "webdataset"]
    base_uri: str = ""
    classes: list[str]
    splits: dict[str, SplitIndex]

    def counts(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}

    def shard_count(self) -> int:
        return sum(len(split.shards) for split in self.splits.values()) if self.format == "webdataset" else 0

    def size_bytes(self) -> int:
        return sum(shard.size for split in self.splits.values() for shard in split.shards)

    def check(self) -> None:
        """Refuse what no job could train on: a split missing or empty, fewer than 2 classes, a class with no image, labels out of range."""
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise BadDataset(f"the dataset has no {' or '.join(repr(m + '/') for m in missing)} split; it needs train/ and val/")
        if len(self.classes) < 2:
            raise BadDataset(f"the dataset has {len(self.classes)} class(es); a classification dataset needs at least 2")
        for name in SPLITS:
            labels = np.concatenate([np.asarray(s.labels, dtype=np.int64) for s in self.splits[name].shards] or [np.zeros(0, np.int64)])
            if len(labels) == 0:
                raise BadDataset(f"the {name}/ split holds no images")
            if labels.min() < 0 or labels.max() >= len(self.classes):
                raise BadDataset(f"the {name}/ split has labels outside 0..{len(self.classes) - 1} (the dataset has {len(self.classes)} classes)")
            empty = [self.classes[c] for c in np.flatnonzero(np.bincount(labels, minlength=len(self.classes)) == 0)]
            if empty:
                raise BadDataset(f"class {empty[0]!r} has no images in {name}/ ({len(empty)} empty class(es) in all); remove the class or add images")
        for split in self.splits.values():
            for shard in split.shards:
                over = [k for k, o, n in zip(shard.keys, shard.offsets, shard.sizes, strict=True) if o < 0 or n <= 0 or (shard.size and o + n > shard.size)]
                if over:
                    raise BadDataset(f"shard {shard.name!r}: sample {over[0]!r} lies outside the shard's {shard.size} bytes")

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json())

    @classmethod
    def read(cls, path: Path) -> DatasetIndex:
        """The index in ``path``; names resolve against its ``base_uri``, or against the file's own folder when that is empty."""
        try:
            index = cls.model_validate_json(path.read_bytes())
        except ValueError as exc:
            raise BadDataset(f"{path.name} is not a dataset index: {str(exc)[:300]}") from None
        return index if index.base_uri else index.model_copy(update={"base_uri": path.resolve().parent.as_uri()})


@dataclass
class SampleTable:
    """One split's samples as arrays: which shard, where in it, how long, which label, which key."""

    shard_names: list[str]
    shard_sizes: list[int]
    shard: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    label: np.ndarray
    key: np.ndarray

    @classmethod
    def of(cls, split: SplitIndex) -> SampleTable:
        shards = split.shards
        counts = [len(s.keys) for s in shards]
        return cls(
            shard_names=[s.name for s in shards],
            shard_sizes=[s.size for s in shards],
            shard=np.repeat(np.arange(len(shards), dtype=np.int32), counts),
            offset=np.asarray([o for s in shards for o in s.offsets], dtype=np.int64),
            size=np.asarray([n for s in shards for n in s.sizes], dtype=np.int64),
            label=np.asarray([c for s in shards for c in s.labels], dtype=np.int64),
            key=np.asarray([k.encode() for s in shards for k in s.keys], dtype=np.bytes_),
        )

    def __len__(self) -> int:
        return len(self.label)

    def describe(self, i: int) -> str:
        key = self.key[i].decode()
        shard = self.shard_names[int(self.shard[i])]
        return f"shard {shard!r}, sample {key!r}" if shard else f"image {key!r}"


def sample_parts(member: str) -> tuple[str, str]:
    """WebDataset naming: ``dir/key.ext.more`` → (``dir/key``, ``ext.more``); the key ends at the basename's first dot."""
    folder, _, base = member.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def load_classes(text: bytes | None, labels: list[int]) -> list[str]:
    """Class names from a ``classes.json`` list, else ``"0"`` … ``"K-1"`` for the largest label K-1."""
    if text is not None:
        names = json.loads(text)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadDataset("classes.json must be a JSON list of class names")
        return names
    return [str(c) for c in range(max(labels, default=-1) + 1)]
