"""Datasets (built-in and ImageFolder), safe archive extraction, batching and augmentation."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from kdcore.data.builtin import BUILTIN_DATASETS, builtin_split
from kdcore.data.imagefolder import load_split as load_imagefolder_split
from kdcore.data.images import ImageSet, fit_to_size
from kdcore.spec import DatasetSource


@lru_cache(maxsize=8)
def _cached_split(builtin: str | None, root: str | None, split: str, input_size: tuple[int, int, int]) -> ImageSet:
    if builtin is not None:
        raw = builtin_split(builtin, split)
        return ImageSet(fit_to_size(raw.images, input_size), raw.labels, raw.classes)
    return load_imagefolder_split(Path(root or "."), split, input_size)


def load_split(source: DatasetSource, split: str, input_size: tuple[int, int, int]) -> ImageSet:
    """A split decoded once at ``input_size`` and kept in memory for the life of the process."""
    return _cached_split(source.builtin, str(source.root) if source.root else None, split, tuple(input_size))


__all__ = ["BUILTIN_DATASETS", "ImageSet", "load_split"]
