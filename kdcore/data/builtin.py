"""Built-in datasets that ship with installed packages, so jobs and tests need no download.

``digits``: scikit-learn's 1,797 8×8 handwritten digits (10 classes), split 80/20 stratified with
a fixed seed so every run and every job sees the same train and validation images.
``glyphs`` (32 classes) and ``glyphs128`` (128 classes, fewer images each): generated stroke glyphs in
confusable pairs (:mod:`kdcore.data.glyphs`), hard enough that a large teacher and a small student
differ; generated on first use, then kept.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache, partial

import numpy as np
import torch

from kdcore.data.glyphs import GLYPH_SETS, SIZE, generate_glyphs, glyph_class_names
from kdcore.data.images import ImageSet

DIGITS_SPLIT_SEED = 0
DIGITS_VAL_FRACTION = 0.2


@lru_cache(maxsize=1)
def _digits() -> dict[str, ImageSet]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=DIGITS_VAL_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels)
    classes = [str(c) for c in range(10)]
    return {
        split: ImageSet(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]), classes)
        for split, idx in (("train", np.sort(train_idx)), ("val", np.sort(val_idx)))
    }


@cache
def _glyphs(name: str) -> dict[str, ImageSet]:
    return {split: ImageSet(*generate_glyphs(split, name)) for split in ("train", "val")}


BUILTIN_DATASETS: dict[str, Callable[[], dict[str, ImageSet]]] = {"digits": _digits, **{name: partial(_glyphs, name) for name in GLYPH_SETS}}


def builtin_split(name: str, split: str) -> ImageSet:
    return BUILTIN_DATASETS[name]()[split]


def _glyphs_info(name: str) -> dict:
    classes = glyph_class_names(name)
    return {
        "classes": classes,
        "splits": {split: GLYPH_SETS[name].per_class(split) * len(classes) for split in ("train", "val")},
        "native_size": [3, SIZE, SIZE],
    }


def _decoded_info(name: str) -> dict:
    splits = BUILTIN_DATASETS[name]()
    return {"classes": splits["train"].classes, "splits": {k: len(v) for k, v in splits.items()}, "native_size": list(splits["train"].images.shape[1:])}


def builtin_info(name: str) -> dict:
    """Classes, split sizes and native image size; a glyph set answers from its constants instead of rendering its images."""
    return _glyphs_info(name) if name in GLYPH_SETS else _decoded_info(name)
