from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class JobEventOut(BaseModel):
    """A status change (``status``, ``detail``), a metric point (``name``, ``step``, ``epoch``, ``value``), or the MLflow registry hand-off (``name``, ``detail``)."""

    seq: int = Field(description="increasing per deployment; pass the last one seen as ?after= to continue")
    type: Literal["status", "metric", "registry"]
    time: str
    status: str | None = None
    detail: dict[str, Any] | None = None
    name: str | None = None
    step: int | None = None
    epoch: int | None = None
    value: float | None = None


class JobEventPage(BaseModel):
    items: list[JobEventOut]
    next_cursor: str | None = None
