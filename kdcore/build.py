"""Turn a :class:`JobSpec` into live objects: data, teachers, student, distiller, optimizer, schedule.

Every check that can fail on user input (class counts, features a method needs, an unknown
architecture) fails here with a typed error, before any training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import ValidationError

from kdcore.data.loader_pool import LoaderPool
from kdcore.data.pipeline import Split, open_splits
from kdcore.errors import BadDataset, BadSpec, BadTeacher
from kdcore.methods import Distiller, Hyperparams, MethodContext
from kdcore.models.features import supports_features
from kdcore.models.loading import Teacher, _read_state_dict
from kdcore.models.preprocess import PreprocessedModel
from kdcore.models.registry import create_model, is_model
from kdcore.spec import JobSpec, TrainingConfig

DEFAULT_INPUT_SIZE = (3, 32, 32)


@dataclass
class RunData:
    """The splits, in memory (``ImageSet``) or streamed (``StreamedSplit``, then ``streamed`` is set)."""

    train: Split | None
    val: Split | None
    num_classes: int
    input_size: tuple[int, int, int]
    streamed: bool = False
    pool: LoaderPool | None = None

    def close(self) -> None:
        """Stop the streamed splits' loader workers."""
        if self.pool is not None:
            self.pool.close()


def resolve_input_size(spec: JobSpec) -> tuple[int, int, int]:
    if spec.training.input_size is not None:
        return spec.training.input_size
    if spec.teachers:
        return spec.teachers[0].input_size
    return DEFAULT_INPUT_SIZE


def load_data(spec: JobSpec, method: type[Distiller]) -> RunData:
    input_size = resolve_input_size(spec)
    if spec.dataset is None:
        if method.needs_dataset:
            raise BadSpec(f"method {method.name!r} needs a dataset; give 'dataset'")
        if not spec.teachers:
            raise BadSpec("a data-free job needs a teacher to take num_classes from")
        return RunData(None, None, spec.teachers[0].num_classes, input_size)
    opened = open_splits(spec.dataset, spec.training, input_size, method.needs_dataset, spec.work_dir)
    train, val = opened.train, opened.val
    for teacher in spec.teachers:
        if teacher.num_classes != val.num_classes:
            if opened.pool is not None:
                opened.pool.close()
            raise BadDataset(f"teacher {teacher.name or teacher.path.name} has {teacher.num_classes} classes but the dataset has {val.num_classes}")
    return RunData(train, val, val.num_classes, input_size, opened.streamed, opened.pool)


def load_teachers(spec: JobSpec, method: type[Distiller]) -> list[Teacher]:
    low, high = method.teacher_count
    count = len(spec.teachers)
    if count < low or (high is not None and count > high):
        wanted = f"{low}" if low == high else f"{low}–{high if high is not None else 'any'}"
        raise BadSpec(f"method {method.name!r} takes {wanted} teacher(s), the job gives {count}")
    teachers = [Teacher(source) for source in spec.teachers]
    if method.needs_teacher_features or method.needs_batchnorm_statistics:
        for teacher in teachers:
            if not teacher.supports_features:
                raise BadTeacher(f"method {method.name!r} needs teacher features or BatchNorm statistics; a {teacher.source.format} teacher gives logits only")
    return teachers


def build_student(spec: JobSpec, num_classes: int, input_size: tuple[int, int, int], method: type[Distiller]) -> PreprocessedModel:
    if not is_model(spec.student.arch):
        raise BadSpec(f"unknown student architecture {spec.student.arch!r}: use a timm or torchvision name or a kdcore one such as cifar_resnet8x4")
    try:
        model = create_model(spec.student.arch, num_classes=num_classes, in_chans=input_size[0], arch_kwargs=spec.student.arch_kwargs)
    except ValueError as exc:
        raise BadSpec(f"student: {exc}") from exc
    if spec.student.init is not None:
        fmt = "safetensors" if spec.student.init.suffix == ".safetensors" else "state_dict"
        result = model.load_state_dict(_read_state_dict(spec.student.init, fmt), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise BadSpec(f"student.init does not fit {spec.student.arch!r}: missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}")
    mean = spec.student.mean or (spec.teachers[0].mean if spec.teachers else None)
    std = spec.student.std or (spec.teachers[0].std if spec.teachers else None)
    student = PreprocessedModel(model, input_size, mean, std)
    if (method.needs_teacher_features or method.needs_student_features) and not supports_features(student):
        raise BadSpec(f"method {method.name!r} reads the student's stage features; {spec.student.arch!r} exposes none")
    return student


def parse_hparams(spec: JobSpec, method: type[Distiller]) -> Hyperparams:
    try:
        return method.Hyperparams(**spec.hyperparams)
    except ValidationError as exc:
        raise BadSpec(f"hyperparams for {spec.method!r}: {exc}") from exc


def build_distiller(
    spec: JobSpec,
    method: type[Distiller],
    hparams: Hyperparams,
    student: PreprocessedModel,
    teachers: list[Teacher],
    data: RunData,
    steps_per_epoch: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> Distiller:
    """The method's distiller; its context's ``batch_size`` is what one rank's ``forward`` sees (the global batch split over the ranks)."""
    batch_size = spec.training.batch_size // world_size
    context = MethodContext(data.num_classes, data.input_size, spec.training.epochs, steps_per_epoch, device, batch_size, rank, world_size)
    return method(student, teachers, hparams, context)


def build_optimizer(config: TrainingConfig, distiller: Distiller) -> torch.optim.Optimizer:
    """One optimizer over the distiller's trainable groups; a group may set its own ``lr`` or ``weight_decay``.

    SGD is plain momentum SGD, as the official code trains (mdistiller, RepDistiller, CTKD, MEAL V2,
    BAKE): no Nesterov.
    """
    params = [group for group in distiller.param_groups() if group["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def build_schedule(config: TrainingConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedules: cosine to zero, step (×0.1 at 50% and 75%), or constant."""

    def factor(step: int) -> float:
        progress = min(1.0, step / max(1, total_steps))
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if config.schedule == "step":
            return 0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
