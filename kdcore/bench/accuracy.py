"""``python -m kdcore.bench.accuracy``: the methods at equal budgets on built-in data, with the spread over seeds.

On ``builtin:glyphs128`` (128 confusable classes, 50 training images each) one teacher (``cifar_resnet20``) is trained per seed set;
``supervised`` and each method then train the same student (``cifar_resnet8``) for the same epochs,
batch size, learning rate and seeds. The table reports mean ± sample sd of validation top-1 and marks
(**bold** gain) each method whose gain over ``supervised`` exceeds 2 sd of the difference. Data-free
methods run on ``builtin:digits`` against a digits teacher, seeing no training image (the validation
split only measures them), each with its CPU seconds (``time.process_time`` of the run, not wall time,
since the machine is shared). ``--quick`` is a smoke check: one seed, few epochs. The table goes to
``.bench/accuracy.md``; ``python -m bench.readme`` copies it into README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdcore.data.glyphs import GLYPH_SETS
from kdcore.spec import JobSpec
from kdcore.training import train

INPUT_SIZE = [3, 32, 32]
DATASET = "glyphs128"
DATASET_CLASSES = 2 * GLYPH_SETS[DATASET].pairs
TEACHER_ARCH, STUDENT_ARCH = "cifar_resnet20", "cifar_resnet8"
DIGITS_TEACHER_ARCH = "cifar_resnet20"
ACCURACY_FILE = Path(".bench") / "accuracy.md"
# (row label, method, hyperparams, teachers)
WITH_DATA: list[tuple[str, str, dict[str, Any], int]] = [
    ("supervised", "supervised", {}, 0),
    ("kd", "kd", {}, 1),
    ("kd + logit standardisation", "kd", {"logit_standardization": True}, 1),
    ("dkd", "dkd", {}, 1),
    ("ctkd", "ctkd", {}, 1),
    ("dist", "dist", {}, 1),
    ("at", "at", {}, 1),
    ("fitnet", "fitnet", {}, 1),
    ("bake", "bake", {}, 0),
    ("byot", "byot", {}, 0),
    ("meal_v2 (2 teachers)", "meal_v2", {}, 2),
]
# The official CIFAR setting at a CPU budget (pool and iterations are the budget choice; see the method's docstring).
DATA_FREE: list[tuple[str, str, dict[str, Any]]] = [
    ("deepinversion (cifar preset)", "deepinversion", {"preset": "cifar", "pool_size": 2048, "inversion_iterations": 60}),
    ("dafl (mnist preset)", "dafl", {"preset": "mnist"}),
    ("datafree_generative", "datafree_generative", {}),
    ("datafree_generative (two_phase)", "datafree_generative", {"preset": "two_phase"}),
]
DATA_FREE_STEPS = 50


@dataclass
class Row:
    label: str
    dataset: str
    scores: list[float]
    cpu_seconds: float
    hyperparams: dict[str, Any]


def _spec(work: Path, name: str, method: str, dataset: str | None, teachers: list[dict], hyperparams: dict, training: dict) -> JobSpec:
    return JobSpec(
        method=method,
        teachers=teachers,
        student={"arch": training.pop("arch", STUDENT_ARCH)},
        dataset={"builtin": dataset} if dataset else None,
        hyperparams=hyperparams,
        training={"batch_size": 64, "input_size": INPUT_SIZE, "augment": "none", **training},
        export=["safetensors"],
        work_dir=work / name,
    )


def _timed(spec: JobSpec) -> tuple[float, float]:
    started = time.process_time()
    result = train(spec)
    return result.metrics["val/top1"], time.process_time() - started


def _teacher(work: Path, dataset: str, arch: str, classes: int, epochs: int) -> tuple[dict, float]:
    spec = _spec(work, f"teacher-{dataset}", "supervised", dataset, [], {}, {"arch": arch, "epochs": epochs, "lr": 0.1, "seed": 0})
    result = train(spec)
    source = {"path": str(result.artifacts[0].path), "format": "safetensors", "arch": arch, "num_classes": classes, "input_size": INPUT_SIZE}
    return source, result.metrics["val/top1"]


def _row(work: Path, label: str, method: str, dataset: str, teachers: list[dict], hyper: dict, training: dict, seeds: list[int]) -> Row:
    scores, cpu = [], 0.0
    for seed in seeds:
        top1, took = _timed(_spec(work, f"{label}-{seed}".replace(" ", "_"), method, dataset, teachers, hyper, {**training, "seed": seed}))
        scores.append(top1)
        cpu += took
        print(f"{label} seed {seed}: {top1:.4f} ({took:.0f} CPU-s)", file=sys.stderr, flush=True)
    return Row(label, dataset, scores, cpu / len(seeds), hyper)


def run(epochs: int, teacher_epochs: int, seeds: list[int], data_free_epochs: int, only: list[str] | None, output: Path, work_dir: Path | None = None) -> str:
    """Train every row and return the table; ``output`` holds the table so far after each row (a long run stopped early keeps its rows).

    In ``work_dir`` (a fresh temporary folder if None) a run stopped early resumes: each training picks up its own checkpoints.
    """
    rows: list[Row] = []
    teacher_top1: float | None = None
    digits_top1: float | None = None

    def table() -> str:
        text = _table(rows, teacher_top1, digits_top1, epochs, teacher_epochs, seeds, data_free_epochs)
        output.write_text(text + "\n")
        return text

    with contextlib.nullcontext(str(work_dir)) if work_dir else tempfile.TemporaryDirectory(prefix="kd-bench-") as folder:
        work = Path(folder)
        if any(not only or method in only for _, method, _, _ in WITH_DATA):
            teacher, teacher_top1 = _teacher(work, DATASET, TEACHER_ARCH, DATASET_CLASSES, teacher_epochs)
            print(f"{DATASET} teacher {TEACHER_ARCH}: {teacher_top1:.4f}", file=sys.stderr, flush=True)
        for label, method, hyper, count in WITH_DATA:
            if not only or method in only:
                rows.append(_row(work, label, method, DATASET, [teacher] * count, hyper, {"epochs": epochs, "lr": 0.05}, seeds))
                table()
        if any(not only or method in only for _, method, _ in DATA_FREE):
            digits_teacher, digits_top1 = _teacher(work, "digits", DIGITS_TEACHER_ARCH, 10, min(15, teacher_epochs))
            print(f"digits teacher {DIGITS_TEACHER_ARCH}: {digits_top1:.4f}", file=sys.stderr, flush=True)
        for label, method, hyper in DATA_FREE:
            if not only or method in only:
                training = {"epochs": data_free_epochs, "lr": 0.05, "steps_per_epoch": DATA_FREE_STEPS}
                rows.append(_row(work, label, method, "digits", [digits_teacher], hyper, training, seeds))
                table()
    return table()


def _mean_sd(scores: list[float]) -> tuple[float, float]:
    return statistics.mean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0


def _gain(row: Row, baseline: Row | None) -> str:
    """The gain over supervised in points, bold when it exceeds 2 sd of the difference of the two means."""
    if baseline is None or row is baseline or row.dataset != baseline.dataset:
        return "—"
    (mean, sd), (base, base_sd) = _mean_sd(row.scores), _mean_sd(baseline.scores)
    spread = math.sqrt(sd**2 + base_sd**2)
    text = f"{(mean - base) * 100:+.2f}"
    return f"**{text}**" if len(row.scores) > 1 and mean - base > 2 * spread else text


def _table(rows: list[Row], teacher_top1: float | None, digits_top1: float | None, epochs: int, teacher_epochs: int, seeds: list[int], df_epochs: int) -> str:
    baseline = next((r for r in rows if r.label == "supervised"), None)
    with_data = (
        f"`builtin:{DATASET}` ({DATASET_CLASSES} classes in dot/no-dot pairs, {GLYPH_SETS[DATASET].train_per_class} training images each) at 3×32×32, no augmentation. Teacher `{TEACHER_ARCH}` ({teacher_epochs} epochs): "
        f"**{teacher_top1 * 100:.2f}%** top-1. Student `{STUDENT_ARCH}` for every method; batch 64, SGD lr 0.05 cosine, {epochs} epochs. "
        if teacher_top1 is not None
        else ""
    )
    data_free = (
        f"Data-free rows: `builtin:digits` at 3×32×32, teacher `{DIGITS_TEACHER_ARCH}` ({min(15, teacher_epochs)} epochs) **{digits_top1 * 100:.2f}%**, "
        f"student `{STUDENT_ARCH}`, {df_epochs} epochs × {DATA_FREE_STEPS} synthetic batches of 64, no training image seen. "
        if digits_top1 is not None
        else ""
    )
    lines = [
        f"{with_data}{data_free}Seeds {seeds}. A **bold** gain exceeds 2 sd (of the difference "
        "of the means) over supervised. CPU-s: `time.process_time()` of one run. Hyperparameters are the paper defaults unless noted.",
        "",
        "| method | data | student top-1 (mean ± sd) | vs supervised | of teacher | CPU-s/run | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        mean, sd = _mean_sd(row.scores)
        reference = (teacher_top1 if row.dataset == DATASET else digits_top1) or 1.0
        note = ", ".join(f"{k}={v}" for k, v in row.hyperparams.items())
        lines.append(
            f"| {row.label} | {row.dataset} | {mean * 100:.2f} ± {sd * 100:.2f} | {_gain(row, baseline)} | {mean / reference * 100:.0f}% | {row.cpu_seconds:.0f} | {note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcore.bench.accuracy")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-free-epochs", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="smoke check: one seed, 2 epochs (teachers 3), 1 data-free epoch")
    parser.add_argument("--only", nargs="*", help="method names to run (rows of other methods are left out)")
    parser.add_argument("--work-dir", type=Path, help="keep the runs here, so a stopped benchmark resumes where it was (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=ACCURACY_FILE, help="where the markdown table goes (python -m bench.readme copies it into README.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.teacher_epochs, args.seeds, args.data_free_epochs = 2, 3, [0], 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    table = run(args.epochs, args.teacher_epochs, args.seeds, args.data_free_epochs, args.only, args.output, args.work_dir)
    print(table)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
