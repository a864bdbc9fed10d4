"""The end of a run: measure the student and its teachers the same way, export, write the report.

The metrics returned are computed on the exported file itself (the TorchScript student when it is
exported), so what a user downloads scores what the job reports.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from kdcore.data.images import ImageSet
from kdcore.evaluate import evaluate
from kdcore.events import MetricPoint, TrainResult
from kdcore.export import ExportedFile, export_student, load_torchscript
from kdcore.methods import Distiller
from kdcore.models.loading import Teacher
from kdcore.phases import PhaseClock
from kdcore.profile import count_macs, cpu_latency
from kdcore.report import write_report
from kdcore.spec import JobSpec


class _Ensemble(torch.nn.Module):
    """Teachers' averaged softmax, the target an ensemble method distils (as log-probabilities)."""

    def __init__(self, teachers: list[Teacher]) -> None:
        super().__init__()
        self.members = teachers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.softmax(t(x).float(), dim=1) for t in self.members]).mean(0).log()


def finish_run(
    spec: JobSpec,
    distiller: Distiller,
    teachers: list[Teacher],
    data,
    device: torch.device,
    throughput: float,
    resumed_from: int,
    history: list[MetricPoint],
    phases: PhaseClock,
) -> TrainResult:
    phases.enter("exporting")
    student = distiller.export_student().float().eval()
    metrics: dict[str, float] = {
        "student/params": float(sum(p.numel() for p in student.parameters())),
        "time/samples_per_second": throughput,
        "data/streamed": float(data.streamed),
    }
    metrics.update({f"method/{k}": v for k, v in distiller.signals().items()})
    if teachers:
        metrics["teacher/params"] = float(sum(t.params for t in teachers))
    export_dir = Path(spec.work_dir) / "export"
    artifacts = export_student(student.cpu(), spec.student.arch, data.num_classes, data.input_size, list(spec.export), export_dir, spec.student.arch_kwargs)
    phases.enter("evaluating")
    val: ImageSet | None = data.val
    if val is not None:
        scored = _exported_scorer(artifacts) or student.cpu()
        final = evaluate(scored, val)
        metrics.update({"val/top1": final.top1, "val/top5": final.top5, "val/loss": final.loss})
        for index, teacher in enumerate(teachers):
            accuracy = evaluate(teacher.cpu(), val)
            metrics.update({f"teacher{index}/val/top1": accuracy.top1, f"teacher{index}/val/top5": accuracy.top5})
        if teachers:
            target = teachers[0] if len(teachers) == 1 else _Ensemble(teachers)
            accuracy = evaluate(target, val)
            metrics.update({"teacher/val/top1": accuracy.top1, "teacher/val/top5": accuracy.top5})
    metrics.update(_costs(artifacts, student, teachers, data.input_size))
    phases.close()
    report = write_report(spec, metrics, history, artifacts, Path(spec.work_dir) / "export" / "report.html", phases.spans)
    return TrainResult(metrics=metrics, artifacts=[*artifacts, report], resumed_from_step=resumed_from)


def _costs(artifacts: list[ExportedFile], student: torch.nn.Module, teachers: list[Teacher], input_size: tuple[int, int, int]) -> dict[str, float]:
    """MACs, CPU latency at batch 1 and 32, and file size, for the exported student and the teachers."""
    costs: dict[str, float] = {}
    scorer = _exported_scorer(artifacts) or student.cpu()
    if (macs := count_macs(student.cpu(), input_size)) is not None:
        costs["student/macs"] = float(macs)
    for batch in (1, 32):
        costs.update(cpu_latency(scorer, input_size, batch).metrics(f"student/latency_ms_b{batch}"))
    sizes = [a.path.stat().st_size for a in artifacts if a.kind == "student_safetensors"]
    if sizes:
        costs["student/file_bytes"] = float(sizes[0])
    if teachers:
        teacher_macs = [count_macs(t.cpu(), t.source.input_size) for t in teachers]
        counted = [m for m in teacher_macs if m is not None]
        if len(counted) == len(teacher_macs):
            costs["teacher/macs"] = float(sum(counted))
        cpu_teachers = [t.cpu() for t in teachers]
        for batch in (1, 32):
            costs.update(cpu_latency(lambda x: [t(x) for t in cpu_teachers], input_size, batch).metrics(f"teacher/latency_ms_b{batch}"))
        costs["teacher/file_bytes"] = float(sum(Path(t.source.path).stat().st_size for t in teachers))
    return costs


def _exported_scorer(artifacts: list[ExportedFile]):
    for item in artifacts:
        if item.kind == "student_torchscript":
            return load_torchscript(item.path)
    return None
