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
from kdcore.export import ExportedFile, export_student
from kdcore.methods import Distiller
from kdcore.models.loading import Teacher
from kdcore.report import write_report
from kdcore.spec import JobSpec


class _Ensemble(torch.nn.Module):
    """Teachers' averaged softmax, the target an ensemble method distils (as log-probabilities)."""

    def __init__(self, teachers: list[Teacher]) -> None:
        super().__init__()
        self.members = teachers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.softmax(t(x).float(), dim=1) for t in self.members]).mean(0).log()


def finish_run(spec: JobSpec, distiller: Distiller, teachers: list[Teacher], data, device: torch.device, throughput: float, resumed_from: int, history: list[MetricPoint]) -> TrainResult:
    student = distiller.export_student().float().eval()
    metrics: dict[str, float] = {
        "student/params": float(sum(p.numel() for p in student.parameters())),
        "time/samples_per_second": throughput,
    }
    metrics.update({f"method/{k}": v for k, v in distiller.signals().items()})
    if teachers:
        metrics["teacher/params"] = float(sum(t.params for t in teachers))
    artifacts = export_student(student.cpu(), spec.student.arch, data.num_classes, data.input_size, list(spec.export), Path(spec.work_dir) / "export")
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
    report = write_report(spec, metrics, history, artifacts, Path(spec.work_dir) / "export" / "report.html")
    return TrainResult(metrics=metrics, artifacts=[*artifacts, report], resumed_from_step=resumed_from)


def _exported_scorer(artifacts: list[ExportedFile]):
    for item in artifacts:
        if item.kind == "student_torchscript":
            return torch.jit.load(str(item.path)).eval()
    return None
