"""ImageFolder trees: ``train/<class>/<image>`` and ``val/<class>/<image>``; sorted class names give labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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


def scan(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """(path, label) per split, after checking both splits exist and share the same classes."""
    root = find_root(root)
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise BadDataset(
            f"the archive has no {' or '.join(repr(m + '/') for m in missing)} folder; lay it out as train/<class>/<image> and val/<class>/<image>"
        )
    classes_by_split = {s: sorted(d.name for d in (root / s).iterdir() if d.is_dir() and not d.name.startswith(".")) for s in SPLITS}
    if classes_by_split["train"] != classes_by_split["val"]:
        only_train = sorted(set(classes_by_split["train"]) - set(classes_by_split["val"]))
        only_val = sorted(set(classes_by_split["val"]) - set(classes_by_split["train"]))
        raise BadDataset(
            f"train and val have different classes (only in train: {only_train[:10]}, only in val: {only_val[:10]}); both splits need the same class folders"
        )
    classes = classes_by_split["train"]
    if len(classes) < 2:
        raise BadDataset(f"found {len(classes)} class folder(s) under train/; a classification dataset needs at least 2")
    index = {name: i for i, name in enumerate(classes)}
    out: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        items = [(file, index[cls]) for cls in classes for file in sorted((root / split / cls).rglob("*")) if file.is_file() and not file.name.startswith(".")]
        if not items:
            raise BadDataset(f"the {split}/ split holds no images")
        out[split] = items
    return out


def class_names(root: Path) -> list[str]:
    root = find_root(root)
    return sorted(d.name for d in (root / "train").iterdir() if d.is_dir() and not d.name.startswith("."))


def decode(path: Path, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """One image as uint8 ``[C,H,W]``; a file that does not decode is a :class:`BadDataset`."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadDataset(f"image {path.name!r} does not decode ({exc}); remove it or re-encode it as PNG/JPEG") from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def load_split(root: Path, split: str, input_size: Sequence[int]) -> ImageSet:
    """Decode a whole split at ``input_size`` into memory."""
    items = scan(root)[split]
    channels, height, width = (int(v) for v in input_size)
    images = torch.stack([decode(path, channels, (height, width)) for path, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return ImageSet(fit_to_size(images, input_size), labels, class_names(root))


def verify(root: Path) -> dict:
    """Decode every image once (small thumbnails) so a broken file is refused at upload, not mid-job."""
    items = scan(root)
    for split_items in items.values():
        for path, _ in split_items:
            decode(path, 3, (8, 8))
    return {"classes": class_names(root), "splits": {s: len(v) for s, v in items.items()}}
