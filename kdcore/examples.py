"""``python -m kdcore.examples DIR``: a dataset archive and a trained teacher to try the service with.

Writes ``DIR/digits32.zip`` (scikit-learn's digits as a 32×32 RGB ImageFolder archive) and
``DIR/teacher.safetensors`` (a ``cifar_resnet20`` trained on it for a few seconds). Nothing is
downloaded.
"""

from __future__ import annotations

import io
import shutil
import sys
import zipfile
from pathlib import Path

from PIL import Image

from kdcore.data.builtin import builtin_split


def write_digits_archive(path: Path, size: int = 32) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for split in ("train", "val"):
            data = builtin_split("digits", split)
            for index, (image, label) in enumerate(zip(data.images, data.labels.tolist(), strict=True)):
                picture = Image.fromarray(image[0].numpy()).resize((size, size), Image.BILINEAR).convert("RGB")
                buffer = io.BytesIO()
                picture.save(buffer, format="PNG")
                archive.writestr(f"{split}/{label}/{index}.png", buffer.getvalue())
    return path


def train_example_teacher(archive: Path, out: Path, epochs: int = 8) -> Path:
    from kdcore.spec import JobSpec
    from kdcore.train import train

    work = out.parent / ".teacher-run"
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(work / "data")
    spec = JobSpec(
        method="supervised",
        student={"arch": "cifar_resnet20"},
        dataset={"root": work / "data"},
        export=["safetensors"],
        work_dir=work / "run",
        training={"epochs": epochs, "batch_size": 64, "augment": "none", "input_size": [3, 32, 32], "lr": 0.1},
    )
    result = train(spec)
    shutil.copyfile(result.artifacts[0].path, out)
    shutil.rmtree(work, ignore_errors=True)
    print(f"teacher val top-1 {result.metrics['val/top1']:.3f}", file=sys.stderr)
    return out


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "example")
    out.mkdir(parents=True, exist_ok=True)
    archive = write_digits_archive(out / "digits32.zip")
    train_example_teacher(archive, out / "teacher.safetensors")
    print(f"wrote {archive} and {out / 'teacher.safetensors'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
