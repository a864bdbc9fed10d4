"""Refuse at submit a job the cost model says cannot finish within its ``training.time_limit_s``."""

from __future__ import annotations

from collections.abc import Sequence

from api.errors import ApiError
from core.job_spec import StoredJobSpec
from core.models import TeacherRow
from kdcore.estimate import arch_flops, estimate_job


def check_estimate(spec: StoredJobSpec, teachers: Sequence[TeacherRow], num_classes: int | None, train_samples: int | None) -> None:
    """A 422 saying what to change when the one-CPU-core estimate exceeds the time limit; jobs asking for CUDA are not judged."""
    training = spec.training
    if training.time_limit_s is None or training.device == "cuda" or training.input_size is None:
        return
    classes = num_classes or (teachers[0].num_classes if teachers else 10)
    size = tuple(training.input_size)
    student = arch_flops(spec.student.arch, classes, size, spec.student.arch_kwargs)
    teacher_flops = [arch_flops(row.arch, classes, size, row.arch_kwargs) if row.arch else student for row in teachers]
    estimate = estimate_job(
        spec.method, spec.hyperparams, training.epochs, training.batch_size, student, teacher_flops, train_samples, training.steps_per_epoch
    )
    if estimate.seconds > training.time_limit_s:
        cheaper = "fewer epochs, a smaller student or input_size"
        if estimate.synthesis_images:
            cheaper += ", or a smaller synthesis budget (hyperparams such as pool_size, inversion_iterations, steps_per_epoch)"
        raise ApiError(
            422,
            f"this job should take {estimate.describe()}, more than training.time_limit_s {training.time_limit_s:.0f} s; "
            f"raise time_limit_s, set training.device 'cuda' on a GPU deployment, or ask for less: {cheaper}",
        )
