"""Datasets tests make themselves: scikit-learn's digits written out as an ImageFolder archive."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from kdcore.data.builtin import builtin_split


def digits_zip(path: Path, size: int = 32, per_class_limit: int | None = None) -> Path:
    """train/<digit>/<n>.png and val/<digit>/<n>.png, RGB at ``size``×``size``, from the fixed digits split."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for split in ("train", "val"):
            data = builtin_split("digits", split)
            counts: dict[int, int] = {}
            for index, (image, label) in enumerate(zip(data.images, data.labels.tolist(), strict=True)):
                counts[label] = counts.get(label, 0) + 1
                if per_class_limit is not None and counts[label] > per_class_limit:
                    continue
                pixels = Image.fromarray(image[0].numpy()).resize((size, size), Image.BILINEAR).convert("RGB")
                buffer = io.BytesIO()
                pixels.save(buffer, format="PNG")
                archive.writestr(f"train/{label}/{index}.png" if split == "train" else f"val/{label}/{index}.png", buffer.getvalue())
    return path


def read_imagefolder_split(root: Path, split: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N,3,H,W] in [0,1] and labels, decoded independently of the service."""
    classes = sorted(d.name for d in (root / split).iterdir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / split / name).iterdir()):
            images.append(np.asarray(Image.open(file).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0)
            labels.append(label)
    return np.stack(images), np.array(labels)
