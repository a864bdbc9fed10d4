"""``train``: samples/s of a ``kd`` job's training loop against the hand-written loop on the same models.

The two alternate for several rounds (ABBA order) and each keeps its best round, so a burst of load
from elsewhere on a shared machine does not land on one side only. The job's figure is the trainer's
own ``time/samples_per_second``, which times the steps (not the per-epoch validation or export),
as the hand-written loop does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kdcore.bench.fixtures import DIGITS, digits, random_teacher
from kdcore.bench.hand_loop import hand_written_kd
from kdcore.bench.results import Section, met
from kdcore.spec import JobSpec
from kdcore.train import train

TEACHER, STUDENT = "cifar_resnet20", "cifar_resnet8"
INPUT_SIZE = (3, 32, 32)
BATCH = 64
TARGET_RATIO = 0.95


def _job(work: Path, teacher: dict, epochs: int, augment: str, teacher_cache: str) -> float:
    training = {"epochs": epochs, "batch_size": BATCH, "seed": 0, "input_size": list(INPUT_SIZE), "augment": augment,
                "teacher_cache": teacher_cache, "checkpoint_every_steps": 1_000_000}
    spec = JobSpec(method="kd", teachers=[teacher], student={"arch": STUDENT}, dataset=DIGITS, training=training, export=["safetensors"], work_dir=work)
    return train(spec).metrics["time/samples_per_second"]


def run(work: Path, rounds: int = 3, epochs: int = 2) -> Section:
    teacher = random_teacher(work / "teachers", TEACHER, INPUT_SIZE)
    data = digits("train", INPUT_SIZE)
    hand_written_kd(Path(teacher["path"]), TEACHER, STUDENT, data, epochs=1, max_steps=5)  # warm the kernels once
    job_best = hand_best = 0.0
    for index in range(rounds):
        order = ("job", "hand") if index % 2 == 0 else ("hand", "job")
        for side in order:
            if side == "job":
                job_best = max(job_best, _job(work / f"kd-{index}", teacher, epochs, "none", "off"))
            else:
                hand_best = max(hand_best, hand_written_kd(Path(teacher["path"]), TEACHER, STUDENT, data, epochs))
        print(f"[train] round {index + 1}/{rounds}: job {job_best:.0f}/s, hand-written {hand_best:.0f}/s (best so far)", file=sys.stderr)
    reused = _job(work / "kd-reuse", teacher, epochs, "none", "auto")
    ratio, reuse_ratio = job_best / hand_best, reused / hand_best
    section = Section(
        f"Trainer vs hand-written PyTorch KD loop ({TEACHER} → {STUDENT}, digits at {INPUT_SIZE[1]}×{INPUT_SIZE[2]}, batch {BATCH}, CPU)",
        ["Loop", "samples/s", "Floor: hand-written loop, samples/s", "Ratio", "Target", "Met"],
    )
    section.rows.append(["`kd` job, teacher every step (`teacher_cache: off`)", f"{job_best:.0f}", f"{hand_best:.0f}", f"{ratio:.3f}", f"≥ {TARGET_RATIO}", met(ratio >= TARGET_RATIO)])
    section.rows.append([f"`kd` job, teacher outputs reused (`augment: none`, {epochs} epochs)", f"{reused:.0f}", f"{hand_best:.0f}", f"{reuse_ratio:.3f}", "—", "—"])
    section.notes.append(f"best of {rounds} alternating rounds of {epochs} epochs each; steps only (both sides exclude validation and export)")
    return section
