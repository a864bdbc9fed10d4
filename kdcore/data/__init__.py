"""Datasets (built-in and ImageFolder), safe archive extraction, batching and augmentation."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from kdcore.data.builtin import BUILTIN_DATASETS, builtin_split
from kdcore.data.imagefolder import load_split as load_imagefolder_split
from kdcore.data.images import ImageSet, fit_to_size
from kdcore.data.recipes import eval_ops
from kdcore.spec import DatasetSource


@lru_cache(maxsize=8)
def _cached_split(builtin: str | None, root: str | None, split: str, input_size: tuple[int, int, int], recipe: str) -> ImageSet:
    view = eval_ops(recipe, input_size) if split == "val" else None
    if builtin is not None:
        raw = builtin_split(builtin, split)
        return ImageSet(fit_to_size(view(raw.images) if view else raw.images, input_size), raw.labels, raw.classes)
    return load_imagefolder_split(Path(root or "."), split, input_size, view)


def load_split(source: DatasetSource, split: str, input_size: tuple[int, int, int], recipe: str = "none") -> ImageSet:
    """A split decoded once at ``input_size`` and kept in memory for the life of the process.

    ``val`` goes through the augmentation recipe's evaluation view (``imagenet``: Resize + CenterCrop
    0.875); every other split and recipe is a plain resize, the recipe's random ops coming per batch.
    """
    return _cached_split(source.builtin, str(source.root) if source.root else None, split, tuple(input_size), recipe)


__all__ = ["BUILTIN_DATASETS", "ImageSet", "load_split"]
