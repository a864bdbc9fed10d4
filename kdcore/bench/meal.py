"""``meal``: ``meal_v2`` with two teachers, with and without teacher-output reuse (FKD-style).

Both teachers are trained here first (seconds, through kdcore). Then the same student job runs
three times: teachers every step on fresh random crops (``teacher_cache: off``); with reuse, as the
first job to see these teachers (each crop slot's soft labels computed once, in the first K epochs);
and with reuse as a later job that finds them in the store and never runs a teacher. Times are
whole jobs (setup, training, per-epoch validation, final evaluation, export).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from kdcore.bench.fixtures import DIGITS, trained_teacher
from kdcore.bench.results import Section, met
from kdcore.spec import JobSpec
from kdcore.teacher_cache import STORE_ENV, VARIANTS_PER_SAMPLE
from kdcore.train import train

TEACHERS = (("cifar_resnet32", 1), ("cifar_resnet32", 2))
STUDENT = "cifar_resnet8"
INPUT_SIZE = (3, 16, 16)
TARGET_SPEEDUP, ACCURACY_BAND = 2.0, 0.5


def _job(work: Path, teachers: list[dict], epochs: int, teacher_cache: str) -> tuple[float, float, float]:
    training = {
        "epochs": epochs,
        "batch_size": 64,
        "seed": 0,
        "input_size": list(INPUT_SIZE),
        "augment": "flip_crop",
        "teacher_cache": teacher_cache,
        "lr": 0.05,
        "checkpoint_every_steps": 1_000_000,
    }
    spec = JobSpec(method="meal_v2", teachers=teachers, student={"arch": STUDENT}, dataset=DIGITS, training=training, export=["safetensors"], work_dir=work)
    started = time.perf_counter()
    result = train(spec)
    return time.perf_counter() - started, result.metrics["val/top1"] * 100, result.metrics["time/samples_per_second"]


def run(work: Path, epochs: int = 30, teacher_epochs: int = 5) -> Section:
    teachers, teacher_top1 = [], []
    for arch, seed in TEACHERS:
        source, top1 = trained_teacher(work / "teachers", arch, INPUT_SIZE, teacher_epochs, seed)
        teachers.append(source)
        teacher_top1.append(top1 * 100)
    print(f"[meal] teachers trained: top-1 {', '.join(f'{t:.1f}%' for t in teacher_top1)}", file=sys.stderr)
    previous = os.environ.get(STORE_ENV)
    os.environ[STORE_ENV] = str(work / "teacher-store")
    try:
        off = _job(work / "meal-off", teachers, epochs, "off")
        print(f"[meal] without reuse: {off[0]:.1f} s, top-1 {off[1]:.2f}%", file=sys.stderr)
        first = _job(work / "meal-reuse-first", teachers, epochs, "auto")
        print(f"[meal] with reuse, first job: {first[0]:.1f} s, top-1 {first[1]:.2f}%", file=sys.stderr)
        later = _job(work / "meal-reuse-later", teachers, epochs, "auto")
        print(f"[meal] with reuse, later job: {later[0]:.1f} s, top-1 {later[1]:.2f}%", file=sys.stderr)
    finally:
        if previous is None:
            os.environ.pop(STORE_ENV, None)
        else:
            os.environ[STORE_ENV] = previous
    section = Section(
        f"`meal_v2`, 2 teachers ({' + '.join(a for a, _ in TEACHERS)} → {STUDENT}, digits at {INPUT_SIZE[1]}×{INPUT_SIZE[2]}, {epochs} epochs, CPU)",
        ["Run", "Job wall time", "Loop samples/s", "Val top-1", "Speedup vs floor", "Top-1 vs floor", "Target", "Met"],
    )
    section.rows.append(["Floor: teachers every step (`teacher_cache: off`)", f"{off[0]:.1f} s", f"{off[2]:.0f}", f"{off[1]:.2f}%", "1.00×", "—", "—", "—"])
    for label, (wall, top1, sps) in (("Reuse, first job (empty store)", first), ("Reuse, later job (store filled)", later)):
        speedup, delta = off[0] / wall, top1 - off[1]
        section.rows.append(
            [
                label,
                f"{wall:.1f} s",
                f"{sps:.0f}",
                f"{top1:.2f}%",
                f"{speedup:.2f}×",
                f"{delta:+.2f} pt",
                f"≥ {TARGET_SPEEDUP:.0f}×, ±{ACCURACY_BAND} pt",
                met(speedup >= TARGET_SPEEDUP and abs(delta) <= ACCURACY_BAND),
            ]
        )
    section.notes.append(
        f"teachers trained here for {teacher_epochs} epochs: val top-1 {', '.join(f'{t:.1f}%' for t in teacher_top1)}; "
        f"reuse draws crops from {VARIANTS_PER_SAMPLE} fixed crop+flip slots per image, so teachers run in the first {VARIANTS_PER_SAMPLE} epochs at most"
    )
    section.notes.append("digits' validation split has 360 images: one image is 0.28 points")
    section.notes.append(
        f"a first job runs the teachers in {VARIANTS_PER_SAMPLE} of its {epochs} epochs, so its speedup is (s + t) / (s + t·{VARIANTS_PER_SAMPLE}/{epochs}) "
        "with s the student's and t the teachers' time per epoch: it grows with the epochs, towards the later job's (s + t) / s"
    )
    return section
