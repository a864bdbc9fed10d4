"""``meal``: what teacher-output reuse saves now that it never changes the training stream.

``meal_v2`` with two teachers (trained here first, in seconds). Reuse stores the teachers' logits
for the exact views the student trains on (:mod:`kdcore.teacher_cache`), so it pays in two cases,
each timed here against the same job with ``teacher_cache: off``:

* **Within one job, ``augment: none``**: every epoch shows the same plain images, so the teachers
  run once per sample (the store is filled at the first batch) and never again.
* **Across the jobs of a sweep, ``augment: flip_crop``**: each epoch has its own views, so a single
  job runs its teachers on every batch (and writes what they said); a later job with the same
  teachers, data, seed and batch plan (here: another learning rate) loads every epoch's soft labels
  and runs no teacher at all.

Times are whole jobs (setup, training, per-epoch validation, final evaluation, export); loop
samples/s is the trainer's own training-only rate. With s the student's and t the teachers' time
per epoch of steps and E epochs, the expected speedups are (s + t) / (s + t/E) for the job without
augmentation, about 1 for the first job of a sweep, and (s + t) / s for each later one.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kdcore.bench.fixtures import DIGITS, trained_teacher
from kdcore.bench.results import Section
from kdcore.events import MetricPoint, TrainCallbacks
from kdcore.spec import JobSpec
from kdcore.teacher_cache import STORE_ENV
from kdcore.training import train

TEACHERS = (("cifar_resnet32", 1), ("cifar_resnet32", 2))
STUDENT = "cifar_resnet8"
INPUT_SIZE = (3, 16, 16)
SWEEP_LRS = (0.05, 0.1)


class StoreShare(TrainCallbacks):
    """The last ``teacher_cache/from_store`` the job reported: the share of teacher outputs it loaded instead of computing."""

    def __init__(self) -> None:
        self.value: float | None = None

    def on_metrics(self, points: list[MetricPoint]) -> None:
        self.value = next((p.value for p in points if p.name == "teacher_cache/from_store"), self.value)


@dataclass(frozen=True)
class Run:
    wall_s: float
    samples_per_second: float
    top1: float
    from_store: float | None


def _job(work: Path, teachers: list[dict], epochs: int, augment: str, teacher_cache: str, lr: float = SWEEP_LRS[0]) -> Run:
    training = {
        "epochs": epochs,
        "batch_size": 64,
        "seed": 0,
        "input_size": list(INPUT_SIZE),
        "augment": augment,
        "teacher_cache": teacher_cache,
        "lr": lr,
        "checkpoint_every_steps": 1_000_000,
    }
    spec = JobSpec(method="meal_v2", teachers=teachers, student={"arch": STUDENT}, dataset=DIGITS, training=training, export=["safetensors"], work_dir=work)
    share = StoreShare()
    started = time.perf_counter()
    result = train(spec, share)
    wall = time.perf_counter() - started
    run = Run(wall, result.metrics["time/samples_per_second"], result.metrics["val/top1"] * 100, share.value)
    print(f"[meal] {augment}, teacher_cache {teacher_cache}, lr {lr}: {wall:.1f} s, top-1 {run.top1:.2f}%, from store {run.from_store}", file=sys.stderr)
    return run


def _row(label: str, run: Run, floor: Run) -> list[str]:
    share = "—" if run.from_store is None else f"{run.from_store:.0%}"
    speedup = "—" if run is floor else f"{floor.wall_s / run.wall_s:.2f}×"
    loop = "—" if run is floor else f"{run.samples_per_second / floor.samples_per_second:.2f}×"
    return [label, f"{run.wall_s:.1f} s", speedup, f"{run.samples_per_second:.0f}", loop, share, f"{run.top1:.2f}%"]


def run(work: Path, epochs: int = 10, teacher_epochs: int = 5) -> Section:
    teachers, teacher_top1 = [], []
    for arch, seed in TEACHERS:
        source, top1 = trained_teacher(work / "teachers", arch, INPUT_SIZE, teacher_epochs, seed)
        teachers.append(source)
        teacher_top1.append(top1 * 100)
    print(f"[meal] teachers trained: top-1 {', '.join(f'{t:.1f}%' for t in teacher_top1)}", file=sys.stderr)
    previous = os.environ.get(STORE_ENV)
    os.environ[STORE_ENV] = str(work / "teacher-store")
    try:
        plain_off = _job(work / "plain-off", teachers, epochs, "none", "off")
        plain_reuse = _job(work / "plain-reuse", teachers, epochs, "none", "auto")
        crop_off = _job(work / "crop-off", teachers, epochs, "flip_crop", "off")
        sweep = [_job(work / f"crop-sweep-{lr}", teachers, epochs, "flip_crop", "auto", lr) for lr in SWEEP_LRS]
        crop_off_later = _job(work / "crop-off-later", teachers, epochs, "flip_crop", "off", SWEEP_LRS[1])
    finally:
        if previous is None:
            os.environ.pop(STORE_ENV, None)
        else:
            os.environ[STORE_ENV] = previous
    section = Section(
        f"Teacher-output reuse, `meal_v2` with 2 teachers ({' + '.join(a for a, _ in TEACHERS)} → {STUDENT}, digits at {INPUT_SIZE[1]}×{INPUT_SIZE[2]}, "
        f"{epochs} epochs, CPU)",
        ["Run", "Job wall time", "Speedup (wall)", "Loop samples/s", "Speedup (loop)", "Teacher outputs from the store", "Val top-1"],
    )
    section.rows += [
        _row("`augment: none`, `teacher_cache: off` (floor)", plain_off, plain_off),
        _row("`augment: none`, reuse within the job", plain_reuse, plain_off),
        _row(f"`flip_crop`, `teacher_cache: off`, lr {SWEEP_LRS[0]} (floor)", crop_off, crop_off),
        _row(f"`flip_crop`, reuse, first job of a sweep (lr {SWEEP_LRS[0]}, empty store)", sweep[0], crop_off),
        _row(f"`flip_crop`, `teacher_cache: off`, lr {SWEEP_LRS[1]} (floor)", crop_off_later, crop_off_later),
        _row(f"`flip_crop`, reuse, later job of the sweep (lr {SWEEP_LRS[1]}, same teachers, data, seed)", sweep[1], crop_off_later),
    ]
    section.notes.append(
        f"teachers trained here for {teacher_epochs} epochs: val top-1 {', '.join(f'{t:.1f}%' for t in teacher_top1)}; "
        "digits' validation split has 360 images: one image is 0.28 points"
    )
    section.notes.append(
        "reuse trains on exactly the batches `teacher_cache: off` trains on, so a reuse row's top-1 should equal its floor's "
        "(the stored logits are fp16 offsets from each row's fp32 maximum, so tiny differences can remain)"
    )
    section.notes.append(
        f"expected, with s the student's and t the teachers' time per epoch of steps: (s + t) / (s + t/{epochs}) within a job without augmentation "
        "(the teachers run once, at the first batch); about 1× for the first job of a sweep (its teachers run on every batch and their outputs are written); "
        "(s + t) / s for each later job of the sweep, so a sweep of N jobs trains N(s + t) / (s + t + (N − 1)s) times faster than without reuse"
    )
    return section
