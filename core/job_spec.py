"""The job spec as stored on the job row: written once by ``POST /v1/jobs``, read back by the worker.

``JobSpecFields`` is the request body's shape (the API's ``JobCreate`` is exactly these fields);
``StoredJobSpec`` is the same after submission filled in every default — the method's
hyperparameters and the input size taken from the first teacher — so the worker never
re-derives anything: it calls ``StoredJobSpec.model_validate(row.spec)`` and reads typed fields.
Only pydantic and the torch-free ``kdcore.spec`` are imported.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from kdcore.spec import ArchKwargs, ExportFormat, TrainingConfig

BUILTIN_PREFIX = "builtin:"
DEFAULT_EXPORTS: list[ExportFormat] = ["safetensors", "torchscript", "onnx"]


class StudentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: str = Field(description="a timm, torchvision or kdcore architecture name, e.g. cifar_resnet8x4 or resnet10t")
    arch_kwargs: ArchKwargs
    init: str | None = Field(
        default=None, description="a teacher upload ID (tch_…), artifact ID (art_…) or checkpoint ID (ckpt_…) holding weights to start from"
    )


class RegistryRequest(BaseModel):
    """Register the finished student in the MLflow model registry the server is configured with (MLFLOW_TRACKING_URI)."""

    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(
        min_length=1, max_length=200, pattern=r"^\w[\w .\-]*$", description="registered model name; created if missing, each job adds a version"
    )
    stage_tags: dict[Annotated[str, StringConstraints(pattern=r"^\w[\w.\- ]*$", max_length=250)], Annotated[str, StringConstraints(max_length=5000)]] = Field(
        default_factory=dict, max_length=32, description='tags set on the new model version, e.g. {"stage": "candidate"}'
    )


class JobSpecFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    method: str
    teachers: list[str] = Field(default_factory=list, max_length=16)
    student: StudentIn
    dataset: str | None = Field(default=None, description="an uploaded dataset ID (ds_…), builtin:<name>, or null for data-free methods")
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    training: TrainingConfig
    export: list[ExportFormat] = Field(default_factory=lambda: list(DEFAULT_EXPORTS))
    webhook_url: AnyHttpUrl | None = None
    registry: RegistryRequest | None = None

    @property
    def builtin_dataset(self) -> str | None:
        """The built-in dataset's name when ``dataset`` is ``builtin:<name>``."""
        if self.dataset is not None and self.dataset.startswith(BUILTIN_PREFIX):
            return self.dataset.removeprefix(BUILTIN_PREFIX)
        return None

    @property
    def uploaded_dataset(self) -> str | None:
        """The dataset ID when the job trains on an uploaded or registered dataset."""
        return self.dataset if self.dataset is not None and self.builtin_dataset is None else None


class StoredJobSpec(JobSpecFields):
    """A submitted job's spec with every default resolved (``hyperparams`` complete, ``training.input_size`` set)."""
