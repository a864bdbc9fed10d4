"""``streaming``: peak memory of a job's whole process tree on a set ten times the in-memory budget (streamed)
against the same job on a set ten times smaller (held in memory).

Each job runs as ``python -m kdcore train`` in its own process; :class:`bench.memory.TreeMemorySampler`
sums the PSS of it and its loader workers. The sets are 224 px JPEGs, and the budget is the small
set's decoded size, so ``auto`` holds the small set in memory and streams the large one, whose
decoded size (331 MB) is what the in-memory path would add.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.memory import TreeMemorySampler
from kdcore.bench.image_folders import digits_tree
from kdcore.bench.results import Section, met

SIDE = 224
SMALL = {"per_class": 20, "val_per_class": 2}
LARGE = {"per_class": 100, "copies": 2, "val_per_class": 10}
BUDGET = 220 * 3 * SIDE * SIDE
MARGIN_MB = 150


def _peaks_mib(work: Path, tree: Path) -> tuple[float, float, dict]:
    """Peak anonymous and total PSS (MiB) of the job's process tree, and the job's metrics."""
    spec = {
        "method": "supervised",
        "student": {"arch": "test_vit"},
        "dataset": {"root": str(tree), "memory_max_bytes": BUDGET},
        "training": {"epochs": 1, "batch_size": 64, "augment": "none", "input_size": [3, SIDE, SIDE], "seed": 0},
        "export": ["safetensors"],
        "work_dir": str(work / "run"),
    }
    (work / "spec.json").write_text(json.dumps(spec))
    process = subprocess.Popen(
        [sys.executable, "-m", "kdcore", "train", str(work / "spec.json")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    sampler = TreeMemorySampler(process.pid)
    sampler.start()
    output, _ = process.communicate()
    sampler.stop()
    return sampler.peak_anon_kib / 1024, sampler.peak_total_kib / 1024, json.loads(output)["metrics"]


def run(work: Path) -> Section:
    section = Section(
        f"Peak memory of a job's process tree: a set 10× the in-memory budget (streamed) vs one 10× smaller (in memory), {SIDE} px JPEGs, test_vit",
        ["Set", "Images (train + val)", "Decoded at 224 px", "Path", "Peak PSS, anonymous (MiB)", "Peak PSS, total (MiB)"],
    )
    peaks = {}
    for name, shape in (("small", SMALL), ("large", LARGE)):
        tree = digits_tree(work / name / "tree", size=SIDE, image_format="JPEG", **shape)
        count = sum(1 for _ in tree.rglob("*.jpg"))
        peaks[name], total, metrics = _peaks_mib(work / name, tree)
        path = "streamed" if metrics["data/streamed"] else "in memory"
        section.rows.append([name, str(count), f"{count * 3 * SIDE * SIDE / 1e6:.0f} MB", path, f"{peaks[name]:.0f}", f"{total:.0f}"])
        print(f"[streaming] {name}: {count} images, {path}, peak PSS {peaks[name]:.0f} MiB anonymous, {total:.0f} MiB total", file=sys.stderr)
    difference = peaks["large"] - peaks["small"]
    section.notes.append(
        f"budget (`dataset.memory_max_bytes`, the service's DISTILLERY_INMEMORY_MAX_BYTES) = {BUDGET / 1e6:.0f} MB, the small set's decoded size"
    )
    section.notes.append(f"large − small, anonymous PSS = {difference:.0f} MiB (target < {MARGIN_MB} MB: {met(difference < MARGIN_MB)})")
    section.notes.append(
        "anonymous PSS is what the processes allocated; the file-backed rest (library code) is divided among every process on the machine "
        "that maps the same libraries, so the total moves with unrelated load"
    )
    return section
