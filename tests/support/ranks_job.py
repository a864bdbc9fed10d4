"""Small multi-rank kdcore jobs for tests, and a look at whether their rank processes are still there."""

from __future__ import annotations

from pathlib import Path

from kdcore.distributed.launch import ranks_dir
from kdcore.spec import JobSpec, TeacherSource

INPUT = (3, 16, 16)


def kd_spec(teacher: TeacherSource, work: Path, devices: int, **training: object) -> JobSpec:
    config = {"epochs": 1, "batch_size": 128, "seed": 3, "input_size": list(INPUT), "devices": devices, "device": "cpu", "log_every_steps": 2}
    return JobSpec(
        method="kd",
        teachers=[teacher],
        student={"arch": "cifar_resnet8"},
        dataset={"builtin": "digits"},
        training={**config, **training},
        export=["safetensors"],
        work_dir=work,
    )


def rank_pids(spec: JobSpec) -> list[int]:
    return [int(path.read_text()) for path in sorted(ranks_dir(spec).glob("rank-*.pid"))]
