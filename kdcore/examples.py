"""``python -m kdcore.examples DIR``: a dataset archive and a trained teacher to try the service with.

Writes ``DIR/digits32.zip`` (scikit-learn's digits as a 32×32 RGB ImageFolder archive) and
``DIR/teacher.safetensors`` (a ``cifar_resnet20`` trained on it for a few epochs), printing each
epoch as it ends. Nothing is downloaded. ``examples/job.json`` and ``examples/spec.json`` in the
repository use what this writes.
"""

from __future__ import annotations

import io
import shutil
import sys
import time
import zipfile
from pathlib import Path

from PIL import Image

from kdcore.data.builtin import builtin_split
from kdcore.events import Progress, TrainCallbacks

TEACHER_ARCH = "cifar_resnet20"
TEACHER_EPOCHS = 4


def write_digits_archive(path: Path, size: int = 32) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for split in ("train", "val"):
            data = builtin_split("digits", split)
            for index, (image, label) in enumerate(zip(data.images, data.labels.tolist(), strict=True)):
                picture = Image.fromarray(image[0].numpy()).resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
                buffer = io.BytesIO()
                picture.save(buffer, format="PNG")
                archive.writestr(f"{split}/{label}/{index}.png", buffer.getvalue())
    return path


class _QuarterLines(TrainCallbacks):
    """A stderr line at each quarter of training, so a person sees the teacher train."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = 0

    def on_progress(self, progress: Progress) -> None:
        quarter = int(progress.fraction * 4)
        if quarter > self.shown:
            self.shown = quarter
            print(f"  {quarter * 25}% ({time.monotonic() - self.started:.0f} s)", file=sys.stderr, flush=True)


def train_example_teacher(archive: Path, out: Path, epochs: int = TEACHER_EPOCHS) -> Path:
    from kdcore.spec import JobSpec
    from kdcore.training import train

    work = out.parent / ".teacher-run"
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(work / "data")
    spec = JobSpec(
        method="supervised",
        student={"arch": TEACHER_ARCH},
        dataset={"root": work / "data"},
        export=["safetensors"],
        work_dir=work / "run",
        training={"epochs": epochs, "batch_size": 64, "augment": "none", "input_size": [3, 32, 32], "lr": 0.1},
    )
    result = train(spec, _QuarterLines())
    shutil.copyfile(result.artifacts[0].path, out)
    shutil.rmtree(work, ignore_errors=True)
    print(f"teacher {TEACHER_ARCH}: val top-1 {result.metrics['val/top1']:.3f}", file=sys.stderr)
    return out


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "example")
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing {out / 'digits32.zip'} ...", file=sys.stderr, flush=True)
    archive = write_digits_archive(out / "digits32.zip")
    print(f"training {TEACHER_ARCH} on it for {TEACHER_EPOCHS} epochs ...", file=sys.stderr, flush=True)
    train_example_teacher(archive, out / "teacher.safetensors")
    print(f"wrote {archive} and {out / 'teacher.safetensors'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
