"""WebDataset tar shards: write them from an ImageFolder tree, and index one by reading its headers.

Layout (the WebDataset convention, plain ``tarfile``): ``<split>/shard-000000.tar``, each sample
two members sharing a key, ``<key>.<ext>`` (the image's original bytes, never re-encoded) and
``<key>.cls`` (the label as decimal text). Samples are shuffled across the shards of a split with
a fixed seed, so any one shard holds a mix of classes and a window of a few shards is a fair
sample of the whole. ``index.json`` next to the shards records every sample's byte offset, so
a reader seeks straight to an image without walking the tar.

Only uncompressed ``.tar`` shards can be read at an offset; ``.tar.gz`` shards are refused.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

from kdcore.data import imagefolder
from kdcore.data.index import INDEX_FILE, DatasetIndex, ShardEntry, SplitIndex, sample_parts
from kdcore.errors import BadDataset

SHARD_BYTES = 256 * 1024**2
SHUFFLE_SEED = 0
IMAGE_EXTENSIONS = {suffix.lstrip(".") for suffix in imagefolder.IMAGE_SUFFIXES}


def shard_name(split: str, number: int) -> str:
    return f"{split}/shard-{number:06d}.tar"


def _member(name: str, payload: bytes) -> tuple[tarfile.TarInfo, BinaryIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(payload), 0o644, 0
    return info, io.BytesIO(payload)


def write_split(items: list[tuple[Path, int]], split: str, out: Path, shard_bytes: int = SHARD_BYTES, seed: int = SHUFFLE_SEED) -> list[ShardEntry]:
    """Write ``items`` (path, label) in a seeded random order into shards of about ``shard_bytes``; their entries."""
    order = np.random.default_rng(seed).permutation(len(items))
    names: list[str] = []
    tar: tarfile.TarFile | None = None
    for number, position in enumerate(order.tolist()):
        if tar is None or tar.offset >= shard_bytes:
            if tar is not None:
                tar.close()
            names.append(shard_name(split, len(names)))
            (out / names[-1]).parent.mkdir(parents=True, exist_ok=True)
            tar = tarfile.open(out / names[-1], "w", format=tarfile.USTAR_FORMAT)
        path, label = items[position]
        key = f"{number:09d}"
        tar.addfile(*_member(f"{key}.{path.suffix.lower().lstrip('.')}", path.read_bytes()))
        tar.addfile(*_member(f"{key}.cls", str(label).encode()))
    if tar is not None:
        tar.close()
    entries = []
    for name in names:
        with open(out / name, "rb") as stream:
            entries.append(index_tar(stream, name, (out / name).stat().st_size))
    return entries


def write_shards(root: Path, out: Path, shard_bytes: int = SHARD_BYTES, seed: int = SHUFFLE_SEED) -> DatasetIndex:
    """Convert an ImageFolder tree into WebDataset shards plus ``index.json`` under ``out``."""
    items = imagefolder.scan(root)
    out.mkdir(parents=True, exist_ok=True)
    splits = {split: SplitIndex(shards=write_split(entries, split, out, shard_bytes, seed)) for split, entries in items.items()}
    index = DatasetIndex(format="webdataset", classes=imagefolder.class_names(root), splits=splits)
    index.check()
    index.write(out / INDEX_FILE)
    return index


def index_tar(stream: BinaryIO, name: str, size: int) -> ShardEntry:
    """Read a shard front to back (headers and labels only; images are skipped, not decoded) into its entry."""
    if name.endswith((".tar.gz", ".tgz")):
        raise BadDataset(f"shard {name!r} is compressed; shards must be plain .tar files so samples can be read at an offset")
    images: dict[str, tuple[int, int]] = {}
    labels: dict[str, int] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BadDataset(f"shard {name!r}: member {member.name!r} is a link or special file; shards hold plain files only")
                key, ext = sample_parts(member.name)
                if ext == "cls":
                    labels[key] = _label(tar.extractfile(member), name, member.name)
                elif ext.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS and key not in images:
                    images[key] = (member.offset_data, member.size)
    except tarfile.TarError as exc:
        raise BadDataset(f"shard {name!r} is not a readable tar file ({exc})") from None
    unlabelled = [k for k in images if k not in labels]
    if unlabelled:
        raise BadDataset(f"shard {name!r}: sample {unlabelled[0]!r} has an image but no {unlabelled[0]}.cls label")
    keys = list(images)
    return ShardEntry(
        name=name,
        size=size,
        keys=keys,
        labels=[labels[k] for k in keys],
        offsets=[images[k][0] for k in keys],
        sizes=[images[k][1] for k in keys],
    )


def _label(handle: IO[bytes] | None, shard: str, member: str) -> int:
    text = handle.read(64).strip() if handle is not None else b""
    try:
        return int(text)
    except ValueError:
        raise BadDataset(f"shard {shard!r}: {member!r} holds {text[:20]!r}, not a class number") from None
