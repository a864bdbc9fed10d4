"""What every distillation method is: one ``Distiller`` subclass, registered by name.

Shaped like mdistiller's distillers: the class holds the student, the frozen teachers and the
method's own modules, and ``forward(batch, info)`` returns the student's logits and a dict of named
losses (``loss/ce``, ``loss/kd``, ...) that the trainer sums and logs. ``forward`` is the one training
path, so the trainer calls the module itself and a ``DistributedDataParallel`` wrapper around it
needs nothing else. Hyperparameters come from the class's own pydantic model (``Distiller[KDHyperparams]``
types ``self.hparams``), whose defaults are the paper's; never from a global config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from kdcore.data.loader import Batch, BatchPlan
from kdcore.models.loading import Teacher
from kdcore.models.preprocess import PreprocessedModel
from kdcore.teacher_cache import TeacherOutputCache


class Settings(BaseModel):
    """A group of method settings: unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Hyperparams(Settings):
    """Base of every method's hyperparameter model, with the official code's presets.

    ``presets`` are named bundles of values where the official code tunes by setting (a teacher-student
    pair, a dataset); ``preset`` picks one, and values the user gives override it (nested settings
    key by key). A preset named after a boolean field is also applied whenever that field is true, as
    an official flag brings its companion values (logit standardisation's τ 2 and weight 9).
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    preset: str | None = Field(default=None, description="a named bundle of the official code's values (see the method's presets); given values override it")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        bundles = []
        name = data.get("preset")
        if name is not None:
            if name not in cls.presets:
                raise ValueError(f"unknown preset {name!r}; known: {sorted(cls.presets) or 'none'}")
            bundles.append(cls.presets[name])
        chosen = merge_settings(*bundles, data)
        bundles += [bundle for flag, bundle in cls.presets.items() if flag != name and flag in cls.model_fields and chosen.get(flag) is True]
        return merge_settings(*bundles, data)


def merge_settings(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; nested dicts merge key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            merged[key] = merge_settings(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


@dataclass(frozen=True)
class StepInfo:
    epoch: int
    step: int
    global_step: int
    steps_per_epoch: int
    epochs: int

    @property
    def fraction(self) -> float:
        """Fraction of training done, in [0,1], at this step."""
        return self.global_step / max(1, self.steps_per_epoch * self.epochs)


@dataclass(frozen=True)
class MethodContext:
    """What the trainer knows that a method may need to build its modules."""

    num_classes: int
    input_size: tuple[int, int, int]
    epochs: int
    steps_per_epoch: int
    device: torch.device
    batch_size: int
    rank: int = 0
    world_size: int = 1


HyperparamsT = TypeVar("HyperparamsT", bound=Hyperparams)
Student = PreprocessedModel
"""What a distiller trains: the architecture behind its own preprocessing (``kdcore.build.build_student``)."""
Teachers = Sequence[Teacher]


class Distiller(nn.Module, Generic[HyperparamsT]):
    """Base class. Subclasses set the class attributes below and implement ``forward``."""

    name: ClassVar[str]
    family: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    code: ClassVar[str] = ""
    teacher_count: ClassVar[tuple[int, int | None]] = (1, 1)
    needs_dataset: ClassVar[bool] = True
    needs_teacher_features: ClassVar[bool] = False
    needs_student_features: ClassVar[bool] = False
    needs_batchnorm_statistics: ClassVar[bool] = False
    self_stepped: ClassVar[tuple[str, ...]] = ()
    """Submodules the method steps with its own optimizer inside ``forward`` (a generator): each gets its own DDP wrapper."""
    rank_local_buffers: ClassVar[tuple[str, ...]] = ()
    """Buffers that differ per rank by design (a pool of synthesised images): never broadcast between ranks."""
    Hyperparams: ClassVar[type[Hyperparams]]

    def __init__(self, student: Student, teachers: Teachers, hparams: HyperparamsT, context: MethodContext) -> None:
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleList(teachers)
        self._teachers = tuple(teachers)  # the same modules, typed; a tuple is not a second registration
        self.hparams = hparams
        self.context = context
        self.teacher_cache: TeacherOutputCache | None = None
        self._data_parallel: dict[int, nn.Module] = {}

    def train(self, mode: bool = True) -> Self:
        """The teachers stay in eval mode whatever the trainer asks (BatchNorm statistics must not move)."""
        super().train(mode)
        for teacher in self.teachers:
            teacher.eval()
        return self

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        """One training step's ``{"loss": total, "output": student logits, "loss/<name>": weighted part, ...}`` (see :func:`with_total`)."""
        raise NotImplementedError

    def use_data_parallel(self, module: nn.Module, wrapper: nn.Module) -> None:
        """Route ``forward``'s calls of ``module`` (one of :attr:`self_stepped`) through ``wrapper``."""
        self._data_parallel[id(module)] = wrapper

    def data_parallel(self, module: nn.Module) -> nn.Module:
        """``module`` as ``forward`` calls a self-stepped module: through its DDP wrapper when the run has several ranks."""
        return self._data_parallel.get(id(module), module)

    def teacher(self, index: int = 0) -> Teacher:
        return self._teachers[index]

    def teacher_logits(self, batch: Batch) -> list[Tensor]:
        """Each teacher's logits for the batch, from the output cache where the inputs repeat."""
        outputs = []
        for index, teacher in enumerate(self.teachers):
            if self.teacher_cache is not None:
                outputs.append(self.teacher_cache.logits(index, teacher, batch))
            else:
                with torch.inference_mode():
                    outputs.append(teacher(batch.images).float())
        return [o.clone() if o.is_inference() else o for o in outputs]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer's optimizer steps: everything but the teachers."""
        frozen = {id(p) for p in self.teachers.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups; a group may set its own absolute ``lr`` (e.g. a discriminator's 1e-4)."""
        return [{"params": self.trainable_parameters()}]

    @classmethod
    def batch_plan(cls, hparams: HyperparamsT, labels: Tensor, batch_size: int, seed: int) -> BatchPlan:
        """How epochs are cut into batches; BAKE overrides this with class-balanced batches."""
        return BatchPlan(labels, batch_size, seed)

    @classmethod
    def synthesis_images(cls, hparams: HyperparamsT, batch_size: int, total_steps: int) -> int:
        """Images a data-free method pushes through the teacher forward and backward to make its data (the cost model's share)."""
        return 0

    def signals(self) -> dict[str, float]:
        """Method-specific values worth plotting (learned temperature, discriminator accuracy, ...)."""
        return {}

    def export_student(self) -> Student:
        """The module to evaluate and export: the student without any training-only parts."""
        return self.student

    def method_state(self) -> dict[str, Any]:
        """State beyond ``state_dict`` (e.g. an internal optimizer) to checkpoint with the student."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`method_state` returned."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        low, high = cls.teacher_count
        return {
            "name": cls.name,
            "family": cls.family,
            "summary": cls.summary,
            "paper": cls.paper,
            "code": cls.code,
            "teachers": {"min": low, "max": high},
            "needs_dataset": cls.needs_dataset,
            "needs_teacher_features": cls.needs_teacher_features,
            "needs_student_features": cls.needs_student_features or cls.needs_teacher_features,
            "needs_batchnorm_statistics": cls.needs_batchnorm_statistics,
            "hyperparams_schema": cls.Hyperparams.model_json_schema(),
            "presets": cls.Hyperparams.presets,
        }


def with_total(output: Tensor, losses: dict[str, Tensor], **signals: Tensor) -> dict[str, Tensor]:
    """Assemble a ``forward`` result: ``loss`` is the sum of the named parts."""
    result: dict[str, Tensor] = {"output": output, "loss": torch.stack([v for v in losses.values()]).sum()}
    result.update({f"loss/{k}": v for k, v in losses.items()})
    result.update({f"signal/{k}": v for k, v in signals.items()})
    return result
