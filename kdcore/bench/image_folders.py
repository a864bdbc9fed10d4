"""ImageFolder trees written from scikit-learn's digits, for the data-path benchmarks and tests (nothing downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from kdcore.data.builtin import builtin_split


def digits_tree(
    root: Path,
    size: int | tuple[int, int] = 16,
    per_class: int | None = None,
    copies: int = 1,
    image_format: str = "PNG",
    val_per_class: int | None = None,
    noise: float = 0.0,
) -> Path:
    """``root/train/<digit>/<n>.<ext>`` and ``root/val/...`` at ``size`` (side, or (width, height)).

    ``per_class`` caps the images taken per class of each split (``val_per_class``, when given, of
    val); ``copies`` > 1 writes each again under new names (a larger set); ``noise`` adds seeded
    Gaussian noise of that many grey levels, so JPEGs carry the entropy of photographs, not of flat digits.
    """
    suffix = {"PNG": "png", "JPEG": "jpg"}[image_format]
    width, height = (size, size) if isinstance(size, int) else size
    generator = np.random.default_rng(0)
    for split in ("train", "val"):
        data = builtin_split("digits", split)
        cap = val_per_class if split == "val" and val_per_class is not None else per_class
        counts: dict[int, int] = {}
        for index, (image, label) in enumerate(zip(data.images, data.labels.tolist(), strict=True)):
            counts[label] = counts.get(label, 0) + 1
            if cap is not None and counts[label] > cap:
                continue
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.asarray(Image.fromarray(image[0].numpy()).resize((width, height), Image.Resampling.BILINEAR).convert("RGB"), dtype=np.float32)
            for copy in range(copies):
                noisy = pixels + generator.normal(0.0, noise, pixels.shape) if noise else pixels
                buffer = io.BytesIO()
                Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format=image_format)
                (folder / f"{index}-{copy}.{suffix}").write_bytes(buffer.getvalue())
    return root
