from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import Timestamped
from kdcore.spec import ExportFormat, TrainingConfig


class StudentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: str = Field(description="a timm, torchvision or kdcore architecture name, e.g. cifar_resnet8x4 or resnet10t")
    init: str | None = Field(default=None, description="a teacher upload ID (tch_…) or artifact ID (art_…) holding weights to start from")


class RegistryRequest(BaseModel):
    """Register the finished student in the MLflow model registry the server is configured with (MLFLOW_TRACKING_URI)."""

    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(
        min_length=1, max_length=200, pattern=r"^\w[\w .\-]*$", description="registered model name; created if missing, each job adds a version"
    )
    stage_tags: dict[Annotated[str, StringConstraints(pattern=r"^\w[\w.\- ]*$", max_length=250)], Annotated[str, StringConstraints(max_length=5000)]] = Field(
        default_factory=dict, max_length=32, description='tags set on the new model version, e.g. {"stage": "candidate"}'
    )


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    method: str
    teachers: list[str] = Field(default_factory=list, max_length=16)
    student: StudentIn
    dataset: str | None = None
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    training: TrainingConfig
    export: list[ExportFormat] = Field(default_factory=lambda: ["safetensors", "torchscript", "onnx"])
    webhook_url: AnyHttpUrl | None = None
    registry: RegistryRequest | None = None


class JobError(BaseModel):
    code: str
    message: str


class JobProgress(BaseModel):
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    fraction: float = 0.0


class JobOut(Timestamped):
    id: str
    name: str | None
    method: str
    status: str
    spec: dict[str, Any]
    progress: JobProgress
    metrics: dict[str, float]
    error: JobError | None
    attempts: int
    cancel_requested: bool = False
    started_at: datetime | None
    finished_at: datetime | None


class MetricPointOut(BaseModel):
    name: str
    step: int | None
    epoch: int | None
    value: float | None
    time: str


class MetricSeries(BaseModel):
    series: list[MetricPointOut]


class ArtifactOut(BaseModel):
    id: str
    kind: str
    filename: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ArtifactList(BaseModel):
    items: list[ArtifactOut]
