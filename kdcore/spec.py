"""The job spec kdcore trains from: a pydantic model, so a JSON file is validated before any work.

The service builds one from a job row; a researcher writes one by hand for ``python -m kdcore train``.
Paths here are local files: fetching them from object storage is the caller's job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

InputSize = tuple[int, int, int]
TeacherFormat = Literal["safetensors", "state_dict", "onnx", "torchscript", "exported_program"]
SAFE_TEACHER_FORMATS: frozenset[str] = frozenset({"safetensors", "state_dict", "onnx"})
CODE_TEACHER_FORMATS: frozenset[str] = frozenset({"torchscript", "exported_program"})
# Constructor arguments a job may pass to timm/torchvision builders: shape and regularisation, never
# weights, classes or channels (kdcore sets those) nor anything that downloads or runs code.
ARCH_KWARGS: frozenset[str] = frozenset(
    {
        "img_size",
        "patch_size",
        "drop_rate",
        "drop_path_rate",
        "global_pool",
        "class_token",
        "reg_tokens",
        "dynamic_img_size",
        "output_stride",
        "dropout",
        "attention_dropout",
        "stochastic_depth_prob",
        "width_mult",
        "image_size",
        "aux_logits",
        "transform_input",
    }
)


def _allowed_arch_kwargs(value: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - ARCH_KWARGS)
    if unknown:
        raise ValueError(f"arch_kwargs may not set {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(ARCH_KWARGS))}")
    return value


ArchKwargs = Annotated[
    dict[str, int | float | bool | str | tuple[int, ...]],
    AfterValidator(_allowed_arch_kwargs),
    Field(default_factory=dict, description="constructor arguments for the architecture (e.g. img_size, patch_size, drop_path_rate)"),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherSource(StrictModel):
    """Where a teacher's file lies and how to read it."""

    path: Path
    format: TeacherFormat
    arch: str | None = None
    arch_kwargs: ArchKwargs
    num_classes: int = Field(ge=1)
    input_size: InputSize
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    name: str | None = None


class DatasetSource(StrictModel):
    """A built-in dataset by name, an extracted ImageFolder tree with ``train/`` and ``val/``, or a dataset
    index (``kdcore.data.index``: WebDataset shards or ImageFolder objects behind a ``file://``/``s3://`` URI).

    The last fields say how this machine reads it: sets whose decoded size at the job's input size
    is at most ``memory_max_bytes`` are held in memory (``training.data_pipeline: auto``), larger
    ones are streamed; remote shards are cached under ``shard_cache`` up to ``shard_cache_max_bytes``.
    """

    builtin: str | None = None
    root: Path | None = None
    index: Path | None = None
    memory_max_bytes: int = Field(default=2 * 1024**3, ge=0)
    shard_cache: Path | None = Field(default=None, description="default: <work_dir>/shard-cache")
    shard_cache_max_bytes: int = Field(default=50 * 1024**3, ge=1)
    s3_endpoint_url: str | None = None

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, value: str | None) -> str | None:
        from kdcore.data.builtin import BUILTIN_DATASETS

        if value is not None and value not in BUILTIN_DATASETS:
            raise ValueError(f"unknown built-in dataset {value!r}; known: {sorted(BUILTIN_DATASETS)}")
        return value


class StudentSpec(StrictModel):
    arch: str
    arch_kwargs: ArchKwargs
    init: Path | None = Field(default=None, description="safetensors weights to start from")
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


class TrainingConfig(StrictModel):
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=65_536, description="the global batch, split evenly over all devices of all nodes")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = Field(default=None, gt=0, le=10, description="default 0.05 for sgd, 1e-3 for adamw")
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0, le=1)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    seed: int = 0
    input_size: InputSize | None = None
    augment: Literal["flip_crop", "none", "imagenet", "cifar"] = Field(
        default="flip_crop",
        description="flip_crop: padded random crop + flip; cifar: pad-4 crop + flip; imagenet: RandomResizedCrop + flip (val: Resize + CenterCrop 0.875); none",
    )
    data_pipeline: Literal["auto", "memory", "stream"] = Field(
        default="auto",
        description="memory: decode the set once and hold it; stream: loader workers decode each batch; auto: memory when it fits the server's budget",
    )
    loader_workers: int | None = Field(
        default=None, ge=0, le=64, description="streamed path's decoding processes (default: from the CPU count; 0 decodes in the trainer)"
    )
    teacher_cache: Literal["auto", "off"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] | bool = "auto"
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(
        default=1, description="processes on this node, one per GPU, under torch.distributed; 'auto' = every visible GPU (1 on CPU)"
    )
    nodes: int = Field(default=1, ge=1, le=1024, description="machines of the operator's Ray cluster the job spans (devices on each)")
    sync_bn: bool = Field(default=False, description="BatchNorm statistics over the global batch (SyncBatchNorm) when the job runs on several devices")
    checkpoint_every_steps: int = Field(default=200, ge=1)
    time_limit_s: float | None = Field(default=None, gt=0)
    log_every_steps: int = Field(default=10, ge=1)
    steps_per_epoch: int | None = Field(
        default=None, ge=1, le=1_000_000, description="data-free methods only: synthetic batches per epoch (default: the method's)"
    )

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.05 if self.optimizer == "sgd" else 1e-3


ExportFormat = Literal["safetensors", "torchscript", "onnx"]
ALL_EXPORTS: tuple[ExportFormat, ...] = ("safetensors", "torchscript", "onnx")


class JobSpec(StrictModel):
    """Everything one distillation run needs, and nothing about HTTP or queues."""

    name: str | None = None
    method: str
    teachers: list[TeacherSource] = Field(default_factory=list)
    student: StudentSpec
    dataset: DatasetSource | None = None
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    training: TrainingConfig
    export: list[ExportFormat] = Field(default_factory=lambda: list(ALL_EXPORTS))
    work_dir: Path = Path("kdcore-run")
