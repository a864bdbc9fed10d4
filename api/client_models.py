"""What the REST API returns, as typed models for :mod:`api.client`.

They mirror API.md, not the server's own schemas, so the client imports neither FastAPI nor torch
and stays importable anywhere. Unknown fields are kept (``extra="allow"``): a newer server that
adds fields never breaks an older client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class Teacher(ApiModel):
    id: str
    name: str | None = None
    format: str
    arch: str | None = None
    num_classes: int
    input_size: list[int]
    params: int
    sha256: str
    size_bytes: int
    supports_features: bool
    created_at: str


class Dataset(ApiModel):
    id: str
    name: str | None = None
    classes: list[str]
    num_classes: int
    splits: dict[str, int]
    size_bytes: int
    created_at: str


class JobProgress(ApiModel):
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    fraction: float = 0.0


class JobError(ApiModel):
    code: str
    message: str


class Job(ApiModel):
    id: str
    name: str | None = None
    method: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    spec: dict[str, Any] = Field(default_factory=dict)
    progress: JobProgress = Field(default_factory=JobProgress)
    metrics: dict[str, float] = Field(default_factory=dict)
    error: JobError | None = None
    attempts: int = 0
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None

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


class ArtifactLink(ApiModel):
    id: str
    filename: str
    sha256: str
    size_bytes: int
    url: str
    expires_at: str


class MetricPoint(ApiModel):
    name: str
    step: int | None = None
    epoch: int | None = None
    value: float | None = None
    time: str


class JobEvent(ApiModel):
    """A status change (``status``), a metric point (``name``/``step``/``epoch``/``value``), or the stream's ``end``."""

    type: Literal["status", "metric", "registry", "end"]
    seq: int | None = None
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
    id: str
    event: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    created_at: str
