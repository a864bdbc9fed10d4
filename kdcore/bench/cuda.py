"""``cuda``: the ``kd`` benchmark on a GPU, AMP + channels_last against fp32, job against hand-written loop.

Two pairs, each on digits resized to its input size with an untrained teacher (throughput does not
depend on the weights): ``cifar_resnet32x4 → cifar_resnet8x4`` at 32 px and ``resnet50 → resnet18``
at 224 px. For fp32 and for mixed precision (bf16 autocast where the GPU supports it, fp16 with a
GradScaler otherwise, plus channels_last: what a job's ``auto`` picks on CUDA) it reports the job's
images/s, the hand-written loop's with the same settings, their ratio, and the mixed-precision
speedup of each. Without a CUDA device the section says so and nothing runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from kdcore.bench.fixtures import DIGITS, digits, random_teacher
from kdcore.bench.hand_loop import hand_written_kd
from kdcore.bench.results import Section
from kdcore.spec import JobSpec
from kdcore.training import train


@dataclass(frozen=True)
class Pair:
    teacher: str
    student: str
    input_size: tuple[int, int, int]
    batch_size: int


PAIRS = (Pair("cifar_resnet32x4", "cifar_resnet8x4", (3, 32, 32), 256), Pair("resnet50", "resnet18", (3, 224, 224), 128))


def _precisions(device: str) -> dict[str, tuple[dict, torch.dtype | None]]:
    """Job settings and the hand-written loop's autocast dtype: fp32, and what ``amp: auto`` picks on this GPU."""
    mixed = torch.bfloat16 if device != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    return {
        "fp32": ({"amp": "off", "channels_last": "off"}, None),
        "mixed + channels_last": ({"amp": "bf16" if mixed is torch.bfloat16 else "fp16", "channels_last": "on"}, mixed),
    }


def _job(work: Path, pair: Pair, teacher: dict, precision: dict, epochs: int, device: str) -> float:
    training = {
        "epochs": epochs,
        "batch_size": pair.batch_size,
        "seed": 0,
        "input_size": list(pair.input_size),
        "augment": "none",
        "teacher_cache": "off",
        "device": device,
        "checkpoint_every_steps": 1_000_000,
        **precision,
    }
    spec = JobSpec(method="kd", teachers=[teacher], student={"arch": pair.student}, dataset=DIGITS, training=training, export=["safetensors"], work_dir=work)
    return train(spec).metrics["time/samples_per_second"]


def measure(work: Path, pairs: tuple[Pair, ...] = PAIRS, epochs: int = 3, device: str = "cuda") -> Section:
    """The table; ``device="cpu"`` with small pairs checks the code path on a machine without a GPU."""
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    section = Section(
        f"`kd` on {name}: mixed precision + channels_last vs fp32, job vs hand-written loop",
        ["Pair", "Input", "Batch", "Precision", "Job images/s", "Hand-written images/s", "Job / hand", "Speedup vs fp32 (job)"],
    )
    for pair in pairs:
        teacher = random_teacher(work / "teachers", pair.teacher, pair.input_size)
        data = digits("train", pair.input_size)
        fp32_job = None
        for label, (precision, amp) in _precisions(device).items():
            channels_last = precision["channels_last"] == "on"
            hand_loop = {"device": device, "amp": amp, "channels_last": channels_last}
            hand_written_kd(Path(teacher["path"]), pair.teacher, pair.student, data, 1, pair.batch_size, max_steps=5, **hand_loop)  # warm-up
            job = _job(work / f"{pair.student}-{label}", pair, teacher, precision, epochs, device)
            hand = hand_written_kd(Path(teacher["path"]), pair.teacher, pair.student, data, epochs, pair.batch_size, **hand_loop).wall
            fp32_job = fp32_job or job
            print(f"[cuda] {pair.teacher} → {pair.student} {label}: job {job:.0f}/s, hand {hand:.0f}/s", file=sys.stderr)
            section.rows.append(
                [
                    f"{pair.teacher} → {pair.student}",
                    f"{pair.input_size[1]}×{pair.input_size[2]}",
                    str(pair.batch_size),
                    f"{label} ({str(amp).removeprefix('torch.') if amp else 'fp32'})",
                    f"{job:.0f}",
                    f"{hand:.0f}",
                    f"{job / hand:.3f}",
                    f"{job / fp32_job:.2f}×",
                ]
            )
    section.notes.append(
        f"{epochs} epochs of digits ({len(digits('train', pairs[0].input_size))} images) per run, each precision after a 5-step warm-up of its kernels; "
        "the hand-written loop keeps the whole dataset on the device (no input pipeline), so it is the floor a job's loader must match"
    )
    return section


def run(work: Path) -> Section:
    if not torch.cuda.is_available():
        section = Section("`kd` on CUDA: mixed precision + channels_last vs fp32", ["Result"])
        section.rows.append(["not run: this machine has no CUDA device (run `python -m bench cuda` on one)"])
        return section
    return measure(work)
