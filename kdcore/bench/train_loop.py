"""``train``: samples/s of a ``kd`` job's training loop against the hand-written loop on the same models.

The runs alternate for several rounds (ABBA order) and each ratio is the median of the rounds'
ratios, so slow drifts of load from elsewhere on a shared machine hit both sides alike. Two clocks:
wall time (the job's figure is the trainer's own ``time/samples_per_second``, which times the steps,
not the per-epoch validation or export, as the hand-written loop does), and CPU time of the training
thread over the same steps, which other processes cannot inflate. A third run shows the same job
reusing teacher outputs (``augment: none``: the teacher runs over the data once, then never again).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from kdcore.bench.fixtures import DIGITS, digits, random_teacher
from kdcore.bench.hand_loop import LoopSpeed, hand_written_kd
from kdcore.bench.results import Section, met
from kdcore.events import Progress, TrainCallbacks
from kdcore.spec import JobSpec
from kdcore.training import train

TEACHER, STUDENT = "cifar_resnet20", "cifar_resnet8"
INPUT_SIZE = (3, 32, 32)
BATCH = 64
TARGET_RATIO = 0.95


class StepClock(TrainCallbacks):
    """CPU time of the training thread at each progress report the trainer makes inside its loop.

    Consecutive reports within one epoch bracket steps only (validation and checkpoints happen after
    the epoch's last report), so their differences time the same steps as the hand-written loop's.
    """

    def __init__(self) -> None:
        self.marks: list[tuple[int, int, float]] = []

    def on_progress(self, progress: Progress) -> None:
        self.marks.append((progress.epoch, progress.step, time.thread_time()))

    def samples_per_cpu_second(self, batch: int) -> float:
        pairs = [(s1 - s0, c1 - c0) for (e0, s0, c0), (e1, s1, c1) in zip(self.marks, self.marks[1:], strict=False) if e0 == e1 and s1 > s0]
        return batch * sum(p[0] for p in pairs) / sum(p[1] for p in pairs)


def _job(work: Path, teacher: dict, epochs: int, augment: str, teacher_cache: str) -> LoopSpeed:
    training = {
        "epochs": epochs,
        "batch_size": BATCH,
        "seed": 0,
        "input_size": list(INPUT_SIZE),
        "augment": augment,
        "teacher_cache": teacher_cache,
        "checkpoint_every_steps": 1_000_000,
    }
    spec = JobSpec(method="kd", teachers=[teacher], student={"arch": STUDENT}, dataset=DIGITS, training=training, export=["safetensors"], work_dir=work)
    clock = StepClock()
    wall = train(spec, clock).metrics["time/samples_per_second"]
    return LoopSpeed(wall, clock.samples_per_cpu_second(BATCH))


def run(work: Path, rounds: int = 4, epochs: int = 2) -> Section:
    teacher = random_teacher(work / "teachers", TEACHER, INPUT_SIZE)
    data = digits("train", INPUT_SIZE)
    hand_written_kd(Path(teacher["path"]), TEACHER, STUDENT, data, epochs=1, max_steps=5)  # warm the kernels once
    runs = {
        "job": lambda index: _job(work / f"kd-{index}", teacher, epochs, "none", "off"),
        "hand": lambda index: hand_written_kd(Path(teacher["path"]), TEACHER, STUDENT, data, epochs),
        "reuse": lambda index: _job(work / f"kd-reuse-{index}", teacher, epochs, "none", "auto"),
    }
    seen: dict[str, list[LoopSpeed]] = {side: [] for side in runs}
    for index in range(rounds):
        for side in list(runs) if index % 2 == 0 else list(reversed(runs)):
            seen[side].append(runs[side](index))
        print(f"[train] round {index + 1}/{rounds}: " + ", ".join(f"{k} {v[-1].wall:.0f}/s ({v[-1].cpu:.0f}/CPU-s)" for k, v in seen.items()), file=sys.stderr)

    def median(side: str, kind: str) -> float:
        return statistics.median(getattr(speed, kind) for speed in seen[side])

    def ratio(side: str, kind: str) -> float:
        return statistics.median(getattr(a, kind) / getattr(b, kind) for a, b in zip(seen[side], seen["hand"], strict=True))

    section = Section(
        f"Trainer vs hand-written PyTorch KD loop ({TEACHER} → {STUDENT}, digits at {INPUT_SIZE[1]}×{INPUT_SIZE[2]}, batch {BATCH}, CPU)",
        ["Loop", "Clock", "samples/s", "Floor: hand-written loop", "Ratio", "Target", "Met"],
    )
    job = "`kd` job, teacher every step (`teacher_cache: off`)"
    for kind, clock in (("wall", "wall"), ("cpu", "CPU of the training thread")):
        value = ratio("job", kind)
        section.rows.append(
            [job, clock, f"{median('job', kind):.0f}", f"{median('hand', kind):.0f}", f"{value:.3f}", f"≥ {TARGET_RATIO}", met(value >= TARGET_RATIO)]
        )
    reused = f"`kd` job, teacher outputs reused (`augment: none`, {epochs} epochs; the teacher runs in epoch 1 only)"
    section.rows.append([reused, "wall", f"{median('reuse', 'wall'):.0f}", f"{median('hand', 'wall'):.0f}", f"{ratio('reuse', 'wall'):.3f}", "—", "—"])
    section.notes.append(
        f"{rounds} rounds of {epochs} epochs per run, in alternating order; samples/s are medians over rounds, ratios the median of "
        "each round's ratio; steps only, both sides exclude validation and export"
    )
    section.notes.append(
        "wall: the trainer's own time/samples_per_second; CPU: samples per CPU second of the training thread (one torch thread) "
        "over each epoch's steps after the first log interval, which other load on a shared machine cannot inflate"
    )
    return section
