"""``python -m kdcore.examples example``, README's first command: at most a minute of work, progress while it runs, and the files the README and ``examples/`` use.

The limit is on the child's CPU time rather than its wall time, so that a test machine busy with
other work does not fail it. The child runs with one torch thread: with several OpenMP threads on
a loaded machine, CPU time also counts the threads spinning while they wait for each other
(measured on 2 loaded cores: 186 CPU-s with two threads, 48 with one). One thread's CPU time is
the work itself, and bounds the wall time on an idle machine, where more threads only help.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from service import ROOT

from kdcore.models.loading import check_teacher
from kdcore.spec import TeacherSource

pytestmark = [pytest.mark.slow]

CPU_SECONDS_LIMIT = 60


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_the_example_writes_its_files_within_a_minute_of_cpu_and_shows_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = children_cpu_seconds()
    done = subprocess.run(
        [sys.executable, "-m", "kdcore.examples", "example"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    cpu_seconds = children_cpu_seconds() - before
    assert done.returncode == 0, done.stderr[-4000:]
    assert cpu_seconds <= CPU_SECONDS_LIMIT, f"the example took {cpu_seconds:.0f} CPU-s (limit {CPU_SECONDS_LIMIT})\n{done.stderr[-2000:]}"

    lines = done.stderr.splitlines()
    assert lines[:2] == ["writing example/digits32.zip ...", "training cifar_resnet20 on it for 4 epochs ..."], done.stderr
    assert [match.group(1) for line in lines if (match := re.fullmatch(r"  (\d+)% \(\d+ s\)", line))] == ["25", "50", "75", "100"], done.stderr
    top1 = re.search(r"^teacher cifar_resnet20: val top-1 (\d\.\d+)$", done.stderr, re.M)
    assert top1 and float(top1.group(1)) >= 0.9, done.stderr  # good enough to distil from
    assert lines[-1] == "wrote example/digits32.zip and example/teacher.safetensors", done.stderr

    folder = tmp_path / "example"
    assert sorted(path.name for path in folder.iterdir()) == ["digits32.zip", "teacher.safetensors"]  # the training's work folder is gone
    with zipfile.ZipFile(folder / "digits32.zip") as archive:
        classes = {tuple(name.split("/")[:2]) for name in archive.namelist()}
    assert classes == {(split, str(digit)) for split in ("train", "val") for digit in range(10)}
    # the teacher is what examples/spec.json (and README's uploads) say it is, at the path they give relative to the clone:
    # check_teacher loads it as that architecture and runs it, as an upload does, and raises on anything else
    spec = json.loads((ROOT / "examples" / "spec.json").read_text())
    monkeypatch.chdir(tmp_path)
    loaded = check_teacher(TeacherSource.model_validate(spec["teachers"][0]))
    assert loaded.supports_features  # a whole network, so feature-based methods can distil from it too
