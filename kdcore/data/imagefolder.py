"""ImageFolder trees: ``train/<class>/<image>`` and ``val/<class>/<image>``; sorted class names give labels.

The layout rules work on relative names (``train/cat/1.png``, and ``train/cat/`` for a folder), so
one set of checks serves an extracted archive on disk and an object listing of an S3 prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from kdcore.data.images import ImageSet, fit_to_size
from kdcore.errors import BadDataset

SPLITS = ("train", "val")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def find_root(extracted: Path) -> Path:
    """The folder holding ``train/`` and ``val/``: the extraction folder or its single top-level folder."""
    if (extracted / "train").is_dir() or (extracted / "val").is_dir():
        return extracted
    children = [c for c in extracted.iterdir() if c.is_dir() and not c.name.startswith((".", "__MACOSX"))]
    if len(children) == 1:
        return find_root(children[0])
    return extracted


def layout(names: Iterable[str]) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """Classes and ``(name, label)`` per split, after checking both splits exist, share their classes and none is empty.

    Names ending in ``/`` are folders (they make an empty class visible); hidden parts and files
    that are not images by their suffix are left out.
    """
    folders: dict[str, set[str]] = {s: set() for s in SPLITS}
    files: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for name in names:
        parts = name.rstrip("/").split("/")
        if len(parts) < 2 or parts[0] not in SPLITS or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if name.endswith("/") or len(parts) == 2:
            if name.endswith("/"):
                folders[parts[0]].add(parts[1])
            continue
        folders[parts[0]].add(parts[1])
        if Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
            files[parts[0]].append((parts[1], name))
    missing = [s for s in SPLITS if not folders[s]]
    if missing:
        raise BadDataset(
            f"the dataset has no {' or '.join(repr(m + '/') for m in missing)} folder with class folders in it; lay it out as train/<class>/<image> and val/<class>/<image>"
        )
    if folders["train"] != folders["val"]:
        only_train, only_val = sorted(folders["train"] - folders["val"]), sorted(folders["val"] - folders["train"])
        raise BadDataset(
            f"train and val have different classes (only in train: {only_train[:10]}, only in val: {only_val[:10]}); both splits need the same class folders"
        )
    classes = sorted(folders["train"])
    if len(classes) < 2:
        raise BadDataset(f"found {len(classes)} class folder(s) under train/; a classification dataset needs at least 2")
    index = {name: i for i, name in enumerate(classes)}
    out: dict[str, list[tuple[str, int]]] = {}
    for split in SPLITS:
        if not files[split]:
            raise BadDataset(f"the {split}/ split holds no images")
        seen = {cls for cls, _ in files[split]}
        empty = [c for c in classes if c not in seen]
        if empty:
            raise BadDataset(f"class folder {split}/{empty[0]}/ holds no images ({len(empty)} empty class folder(s) in {split}/); remove it or add images")
        out[split] = sorted(((name, index[cls]) for cls, name in files[split]), key=lambda item: (item[1], item[0]))
    return classes, out


def tree_names(root: Path) -> list[str]:
    """Relative names of every folder (with a trailing ``/``) and file under ``root``; symbolic links are refused."""
    names = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise BadDataset(f"{relative!r} is a symbolic link; datasets hold plain files only")
        names.append(relative + "/" if path.is_dir() else relative)
    return names


def scan(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """(path, label) per split of the tree at ``root`` (or its single top-level folder)."""
    root = find_root(root)
    _, items = layout(tree_names(root))
    return {split: [(root / name, label) for name, label in entries] for split, entries in items.items()}


def class_names(root: Path) -> list[str]:
    root = find_root(root)
    return layout(tree_names(root))[0]


def decode(source: Path | IO[bytes], channels: int, size: tuple[int, int] | None = None, name: str | None = None) -> torch.Tensor:
    """One image as uint8 ``[C,H,W]``, resized to ``size`` when given; one that does not decode is a :class:`BadDataset`."""
    try:
        with Image.open(source) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        label = name or (source.name if isinstance(source, Path) else "image")
        raise BadDataset(f"image {label!r} does not decode ({exc}); remove it or re-encode it as PNG/JPEG") from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def load_split(root: Path, split: str, input_size: Sequence[int], view: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ImageSet:
    """Decode a whole split at ``input_size`` into memory; ``view`` (e.g. resize + center crop) maps each full-size image instead."""
    items = scan(root)[split]
    channels, height, width = (int(v) for v in input_size)
    if view is not None:
        images = torch.stack([view(decode(path, channels)) for path, _ in items])
    else:
        images = torch.stack([decode(path, channels, (height, width)) for path, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return ImageSet(fit_to_size(images, input_size), labels, class_names(root))


def verify(root: Path) -> dict:
    """Decode every image once (small thumbnails) so a broken file is refused at upload, not mid-job.

    ``decoded_bytes`` is what the set would take decoded at its images' own sizes (3 bytes a pixel),
    which decides whether it is kept as an archive or converted into shards.
    """
    items = scan(root)
    decoded = 0
    for split_items in items.values():
        for path, _ in split_items:
            decode(path, 3, (8, 8))
            with Image.open(path) as image:
                decoded += image.size[0] * image.size[1] * 3
    return {"classes": class_names(root), "splits": {s: len(v) for s, v in items.items()}, "decoded_bytes": decoded}
