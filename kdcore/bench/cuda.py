"""``cuda`` (``make bench-gpu``): ``kd`` on a GPU, fp32 against mixed precision + channels_last (+ ``torch.compile``), job against hand-written loop.

Two pairs, each on digits resized to its input size with an untrained teacher (throughput does not
depend on the weights): ``cifar_resnet32x4 → cifar_resnet8x4`` at 32 px and ``resnet50 → resnet18``
at 224 px. Precisions: fp32; mixed precision (bf16 autocast where the GPU supports it, fp16 with a
GradScaler otherwise) plus channels_last, what a job's ``auto`` picks on CUDA; and the same with the
student compiled (``training.compile``). For each it reports the job's images/s and the
hand-written loop's with the same settings over the last of three epochs (compilation and kernel
selection are done by then), their ratio, and the speedup over fp32. Then the streamed loader's
images/s at 224 px (:mod:`kdcore.bench.stream_loader`) against what the 224 px job consumed.

Without a CUDA device the GPU table says so, and the same code runs as a smoke check on the CPU
with a small pair (fp32 and bf16 + channels_last; compiling is left out there, it takes minutes):
those rows are CPU figures, not GPU ones.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from kdcore.bench import stream_loader
from kdcore.bench.epoch_clock import EpochClock
from kdcore.bench.fixtures import DIGITS, digits, random_teacher
from kdcore.bench.hand_loop import hand_written_kd
from kdcore.bench.results import Section
from kdcore.spec import JobSpec
from kdcore.training import train

EPOCHS = 3
WARMUP_STEPS = 5


@dataclass(frozen=True)
class Pair:
    teacher: str
    student: str
    input_size: tuple[int, int, int]
    batch_size: int


@dataclass(frozen=True)
class Precision:
    job: dict
    amp: torch.dtype | None
    compile: bool = False

    @property
    def channels_last(self) -> bool:
        return self.job["channels_last"] == "on"


PAIRS = (Pair("cifar_resnet32x4", "cifar_resnet8x4", (3, 32, 32), 256), Pair("resnet50", "resnet18", (3, 224, 224), 128))
CPU_SMOKE_PAIRS = (Pair("cifar_resnet8", "cifar_resnet8", (3, 16, 16), 64),)


def _size(pair: Pair) -> str:
    return f"{pair.input_size[1]}×{pair.input_size[2]}"


def _precisions(device: str) -> dict[str, Precision]:
    """fp32, what ``amp: auto`` picks on this device with channels_last, and that compiled (on CUDA only)."""
    mixed = torch.bfloat16 if device != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    settings = {"amp": "bf16" if mixed is torch.bfloat16 else "fp16", "channels_last": "on"}
    precisions = {"fp32": Precision({"amp": "off", "channels_last": "off"}, None), "mixed + channels_last": Precision(settings, mixed)}
    if device == "cuda":
        precisions["mixed + channels_last + torch.compile"] = Precision({**settings, "compile": True}, mixed, compile=True)
    return precisions


def _job(work: Path, pair: Pair, teacher: dict, precision: Precision, epochs: int, device: str) -> float:
    training = {
        "epochs": epochs,
        "batch_size": pair.batch_size,
        "seed": 0,
        "input_size": list(pair.input_size),
        "augment": "none",
        "teacher_cache": "off",
        "device": device,
        "checkpoint_every_steps": 1_000_000,
        "log_every_steps": 1_000_000,
        **precision.job,
    }
    spec = JobSpec(method="kd", teachers=[teacher], student={"arch": pair.student}, dataset=DIGITS, training=training, export=["safetensors"], work_dir=work)
    clock = EpochClock()
    train(spec, clock)
    return clock.last_epoch_images_per_second(pair.batch_size)


def _row(work: Path, pair: Pair, teacher: dict, label: str, precision: Precision, epochs: int, device: str) -> tuple[float, float]:
    """The job's and the hand-written loop's images/s in their last epoch."""
    data = digits("train", pair.input_size)
    loop = partial(
        hand_written_kd,
        Path(teacher["path"]),
        pair.teacher,
        pair.student,
        data,
        batch_size=pair.batch_size,
        device=device,
        amp=precision.amp,
        channels_last=precision.channels_last,
        compile=precision.compile,
    )
    loop(1, max_steps=WARMUP_STEPS)
    job = _job(work / f"{pair.student}-{label}", pair, teacher, precision, epochs, device)
    hand = loop(epochs).last_epoch
    print(f"[cuda] {pair.teacher} → {pair.student} {label}: job {job:.0f}/s, hand {hand:.0f}/s", file=sys.stderr)
    return job, hand


def measure(work: Path, pairs: tuple[Pair, ...] = PAIRS, epochs: int = EPOCHS, device: str = "cuda") -> tuple[Section, float | None]:
    """The table, and the 224 px job's mixed-precision images/s (what the streamed loader must feed), if a pair ran at 224 px."""
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke check of the GPU benchmark's code, not a GPU figure)"
    section = Section(
        f"`kd` on {name}: mixed precision + channels_last (+ torch.compile) vs fp32, job vs hand-written loop",
        ["Pair", "Input", "Batch", "Precision", "Job images/s", "Hand-written images/s", "Job / hand", "Speedup vs fp32 (job)"],
    )
    consumed = None
    for pair in pairs:
        teacher = random_teacher(work / "teachers", pair.teacher, pair.input_size)
        fp32_job = None
        for label, precision in _precisions(device).items():
            try:
                job, hand = _row(work, pair, teacher, label, precision, epochs, device)
            except Exception as exc:  # a compile failure on this machine's toolchain is a result to report, not a crash
                section.rows.append([f"{pair.teacher} → {pair.student}", _size(pair), str(pair.batch_size), label, f"failed: {exc!r}"[:200], "—", "—", "—"])
                continue
            fp32_job = fp32_job or job
            if pair.input_size[1] == stream_loader.INPUT_SIZE[1] and precision.amp is not None and not precision.compile:
                consumed = job
            section.rows.append(
                [
                    f"{pair.teacher} → {pair.student}",
                    _size(pair),
                    str(pair.batch_size),
                    f"{label} ({str(precision.amp).removeprefix('torch.') if precision.amp else 'fp32'})",
                    f"{job:.0f}",
                    f"{hand:.0f}",
                    f"{job / hand:.3f}",
                    f"{job / fp32_job:.2f}×",
                ]
            )
    section.notes.append(
        f"{epochs} epochs of digits ({len(digits('train', pairs[0].input_size))} images) per run, after a {WARMUP_STEPS}-step warm-up of the hand-written loop; "
        "images/s over the last epoch's steps (compilation and kernel selection done, validation outside); "
        "the hand-written loop keeps the whole dataset on the device (no input pipeline), so it is the floor a job's loader must match"
    )
    return section, consumed


def run(work: Path) -> list[Section]:
    if not torch.cuda.is_available():
        skipped = Section("`kd` on CUDA: mixed precision + channels_last (+ torch.compile) vs fp32", ["Result"])
        skipped.rows.append(["skipped: this machine has no CUDA device, so no GPU figure was measured; the CPU smoke check below ran the same code"])
        smoke, _ = measure(work, CPU_SMOKE_PAIRS, device="cpu")
        return [skipped, smoke, stream_loader.run(work / "stream", "cpu", None)]
    section, consumed = measure(work)
    return [section, stream_loader.run(work / "stream", "cuda", consumed)]
