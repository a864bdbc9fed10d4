"""A job's duration before it runs, from a cost model: forward FLOPs of its models × the images each pass sees.

A training step costs the student a forward and backward pass (about 3 forward passes) and each teacher
one forward pass per image; a data-free method also pushes its synthesised images through the teacher
forward and backward (:meth:`Distiller.synthesis_images`). The seconds come from one measured constant,
``CPU_SECONDS_PER_FORWARD_FLOP``: fwd+bwd passes of a ResNet-18 and a CIFAR ResNet-20 at 32 px, batch 64,
on one core of the 2-core reference machine (0.25 CPU-s per batch, 74 and 82 MFLOPs forward per image),
so the estimate is for one CPU core: several cores run faster, a GPU far faster. The model ignores data
loading, evaluation, export and a generator's own FLOPs; it is meant to tell minutes from hours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kdcore.methods import get_method
from kdcore.models.registry import create_model

if TYPE_CHECKING:  # kdcore.training imports this module: a runtime import would be a cycle
    from kdcore.training.run import TrainingRun

CPU_SECONDS_PER_FORWARD_FLOP = 1.7e-11
FORWARD_AND_BACKWARD = 3.0
DATA_FREE_STEPS_PER_EPOCH = 50


@dataclass(frozen=True)
class JobEstimate:
    seconds: float
    steps: int
    training_images: int
    synthesis_images: int

    def describe(self) -> str:
        where = f"{self.steps} steps, {self.training_images:,} training images"
        if self.synthesis_images:
            where += f", {self.synthesis_images:,} image-iterations of synthesis"
        duration = "under 1 s" if self.seconds < 0.5 else f"about {self.seconds:,.0f} s"
        return f"{duration} on one CPU core ({where})"


def module_flops(model: nn.Module, input_size: Sequence[int]) -> float:
    """Forward FLOPs of ``model`` for one image of ``input_size`` (C, H, W).

    Counted in eval mode: in training mode the probe would move BatchNorm's running statistics (and
    so the trained model), and a BatchNorm over a 1×1 map refuses a batch of one.
    """
    device = next(iter(model.parameters()), torch.empty(0)).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(training)
    return float(counter.get_total_flops())


@lru_cache(maxsize=256)
def _arch_flops(arch: str, num_classes: int, input_size: tuple[int, ...], kwargs: tuple[tuple[str, Any], ...]) -> float:
    with torch.device("meta"):
        model = create_model(arch, num_classes, in_chans=input_size[0], arch_kwargs=dict(kwargs))
    return module_flops(model.eval(), input_size)


def arch_flops(arch: str, num_classes: int, input_size: Sequence[int], arch_kwargs: Mapping[str, Any] | None = None) -> float:
    """Forward FLOPs per image of an architecture, built on the meta device (no memory, no weights)."""
    return _arch_flops(arch, num_classes, tuple(input_size), tuple(sorted((arch_kwargs or {}).items())))


def estimate_job(
    method_name: str,
    hyperparams: Mapping[str, Any],
    epochs: int,
    batch_size: int,
    student_flops: float,
    teacher_flops: Sequence[float],
    train_samples: int | None,
    steps_per_epoch: int | None = None,
) -> JobEstimate:
    """Seconds on one CPU core for a job whose models cost ``student_flops`` and ``teacher_flops`` per image forward.

    ``train_samples`` is the training split's size (None for data-free methods, which take
    ``steps_per_epoch``, else the method's own, synthetic batches per epoch).
    """
    method = get_method(method_name)
    hparams = method.Hyperparams(**hyperparams)
    if train_samples is not None and method.needs_dataset:
        steps = math.ceil(train_samples / batch_size) * epochs
    else:
        steps = (steps_per_epoch or int(getattr(hparams, "steps_per_epoch", DATA_FREE_STEPS_PER_EPOCH))) * epochs
    training_images = steps * batch_size
    synthesis = method.synthesis_images(hparams, batch_size, steps)
    per_image = FORWARD_AND_BACKWARD * student_flops + sum(teacher_flops)
    first_teacher = teacher_flops[0] if teacher_flops else student_flops
    flops = training_images * per_image + synthesis * FORWARD_AND_BACKWARD * first_teacher
    return JobEstimate(flops * CPU_SECONDS_PER_FORWARD_FLOP, steps, training_images, synthesis)


def estimate_run(run: TrainingRun) -> JobEstimate:
    """The estimate of a prepared run, from its own built student and teachers."""
    spec, size = run.spec, run.distiller.context.input_size
    distiller = run.distiller
    return estimate_job(
        spec.method,
        spec.hyperparams,
        spec.training.epochs,
        spec.training.batch_size,
        module_flops(distiller.student, size),
        [module_flops(teacher, size) for teacher in distiller.teachers],
        None,
        run.steps_per_epoch,
    )
