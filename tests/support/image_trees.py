"""ImageFolder trees on disk, made from scikit-learn's digits, for the streamed-data tests."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from PIL import Image

from kdcore.data.builtin import builtin_split
from kdcore.data.index import DatasetIndex
from kdcore.data.shards import write_shards


def digits_tree(root: Path, size: int = 16, per_class: int | None = None, copies: int = 1, image_format: str = "PNG") -> Path:
    """``root/train/<digit>/<n>.<ext>`` and ``root/val/...``; ``copies`` > 1 repeats every image under new names (a larger set)."""
    suffix = {"PNG": "png", "JPEG": "jpg"}[image_format]
    for split in ("train", "val"):
        data = builtin_split("digits", split)
        counts: dict[int, int] = {}
        for index, (image, label) in enumerate(zip(data.images, data.labels.tolist(), strict=True)):
            counts[label] = counts.get(label, 0) + 1
            if per_class is not None and counts[label] > per_class:
                continue
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = Image.fromarray(image[0].numpy()).resize((size, size), Image.BILINEAR).convert("RGB")
            buffer = io.BytesIO()
            pixels.save(buffer, format=image_format)
            for copy in range(copies):
                (folder / f"{index}-{copy}.{suffix}").write_bytes(buffer.getvalue())
    return root


def sharded_digits(folder: Path, per_class: int, shard_bytes: int, size: int = 12) -> tuple[Path, Path, DatasetIndex]:
    """A digits tree under ``folder/tree`` and its WebDataset shards under ``folder/shards``; (tree, shards, index with base_uri)."""
    tree = digits_tree(folder / "tree", size, per_class)
    index = write_shards(tree, folder / "shards", shard_bytes)
    return tree, folder / "shards", index.model_copy(update={"base_uri": (folder / "shards").as_uri()})


def zip_tree(root: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(root.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(root).as_posix())
    return path


def corrupt_member(shard: Path, member_suffix: str = ".png") -> str:
    """Overwrite the bytes of the first image member of a tar shard in place (same size, so offsets stay valid); its name."""
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(member_suffix))
    with open(shard, "r+b") as handle:
        handle.seek(member.offset_data)
        handle.write(b"\x00" * member.size)
    return member.name
