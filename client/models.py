"""What the REST API returns: the one definition of every response body, shared by server and client.

The server declares its routes' ``response_model`` with these classes and the client parses
answers with them, so the two can never drift. Only pydantic is imported: the client package
installs and imports without FastAPI or torch. Unknown fields are kept (``extra="allow"``), so
a newer server that adds fields never breaks an older client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

JobStatus = Literal["queued", "running", "pausing", "paused", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def iso_utc(value: datetime) -> str:
    """ISO 8601 with a ``Z``; naive database times are UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[datetime, PlainSerializer(iso_utc, return_type=str)]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class Teacher(ApiModel):
    id: str
    name: str | None = None
    format: str
    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = Field(default=None, description="constructor arguments the architecture is built with, e.g. img_size, patch_size")
    num_classes: int
    input_size: list[int]
    mean: list[float] | None = None
    std: list[float] | None = None
    params: int
    sha256: str
    size_bytes: int
    supports_features: bool
    uri: str | None = None
    created_at: UtcTime


class Dataset(ApiModel):
    id: str
    name: str | None = None
    classes: list[str]
    num_classes: int
    splits: dict[str, int]
    size_bytes: int
    sha256: str | None = None
    builtin: bool = False
    uri: str | None = Field(default=None, description="the folder a dataset registered by reference lies in; null for uploads")
    format: Literal["imagefolder", "webdataset"] = "imagefolder"
    shards: int = Field(default=0, description="WebDataset tar shards it is read from (0: an uploaded archive held as it is, or ImageFolder objects)")
    verified: int | None = Field(default=None, description="images decoded when it was uploaded or registered")
    created_at: UtcTime


class JobProgress(ApiModel):
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    fraction: float = 0.0


class JobError(ApiModel):
    code: str
    message: str


JobPhaseName = Literal["validating", "teacher_outputs", "training", "evaluating", "exporting", "publishing"]


class JobPhase(ApiModel):
    """One stretch of a job's time; a paused or retried job repeats phases, one entry per stretch."""

    name: JobPhaseName
    started_at: UtcTime
    finished_at: UtcTime | None = None


class Job(ApiModel):
    id: str
    name: str | None = None
    method: str
    status: JobStatus
    spec: dict[str, Any] = Field(default_factory=dict)
    progress: JobProgress = Field(default_factory=JobProgress)
    metrics: dict[str, float] = Field(default_factory=dict)
    error: JobError | None = None
    attempts: int = 0
    cancel_requested: bool = False
    phase: JobPhaseName | None = Field(default=None, description="what the worker is doing now; null when no worker holds the job")
    phases: list[JobPhase] = Field(default_factory=list)
    created_at: UtcTime
    started_at: UtcTime | None = None
    finished_at: UtcTime | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Artifact(ApiModel):
    id: str
    kind: str
    filename: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ArtifactList(ApiModel):
    items: list[Artifact]


class Checkpoint(ApiModel):
    id: str = Field(description="ckpt_…: download its student, or start a new job from it (student.init)")
    step: int
    epoch: int | None = Field(default=None, description="1-based: the epoch the step belongs to")
    metrics: dict[str, float] = Field(default_factory=dict, description="the job's metrics as of that step (val/* at epoch ends)")
    size_bytes: int | None = None
    created_at: UtcTime


class CheckpointList(ApiModel):
    items: list[Checkpoint]


class ArtifactLink(ApiModel):
    id: str
    filename: str
    sha256: str
    size_bytes: int
    url: str = Field(description="a presigned GET URL on the object store; needs no API key until it expires")
    expires_at: str


class MetricPoint(ApiModel):
    name: str
    step: int | None = None
    epoch: int | None = None
    value: float | None = None
    time: str


class MetricSeries(ApiModel):
    series: list[MetricPoint]


class JobEvent(ApiModel):
    """A status change (``status``, ``detail``), a metric point (``name``/``step``/``epoch``/``value``; ``epoch`` 1-based), a phase
    starting (``phase``: ``name``), the MLflow hand-off (``registry``), a notice from the run (``notice``: ``name``, ``detail.message``,
    e.g. ``teacher_cache`` when teacher-output reuse is off and why), or the stream's ``end`` (the job ended or paused)."""

    type: Literal["status", "metric", "phase", "registry", "notice", "end"]
    seq: int | None = Field(default=None, description="increasing per deployment; pass the last one seen as ?after= to continue")
    time: str | None = None
    status: str | None = None
    detail: dict[str, Any] | None = None
    name: str | None = None
    step: int | None = None
    epoch: int | None = None
    value: float | None = None


class JobEventPage(ApiModel):
    items: list[JobEvent]
    next_cursor: str | None = None


class WebhookDelivery(ApiModel):
    id: str = Field(description="also the payload's 'id' and the Distillery-Delivery header, so receivers can drop duplicates")
    event: str = Field(description="job.succeeded | job.failed | job.cancelled")
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: UtcTime | None = None
    delivered_at: UtcTime | None = None
    created_at: UtcTime


class WebhookDeliveryList(ApiModel):
    items: list[WebhookDelivery]


class WebhookSecret(ApiModel):
    secret: str = Field(description="the HMAC-SHA256 key that signs this tenant's webhook deliveries from now on")
    created_at: UtcTime
