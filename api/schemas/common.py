from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field, field_serializer

T = TypeVar("T")
MAX_EVENT_SEQ = 2**63 - 1  # job event sequence numbers are 64-bit; larger ``after`` values are refused, not searched for
PageCursor = Annotated[str | None, Query(pattern=r"^[a-z]+_[0-9a-f]{1,40}$", description="the next_cursor of the previous page (an ID)")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ProblemError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem: every 4xx/5xx answer has this shape, as ``application/problem+json``."""

    type: str = Field(description="a URI naming the kind of problem; about:blank or urn:distillery:<code>")
    title: str
    status: int
    detail: str = Field(description="what went wrong and what to do about it")
    errors: list[ProblemError] | None = Field(default=None, description="one entry per invalid field, for validation problems")


class Timestamped(BaseModel):
    created_at: datetime

    @field_serializer("created_at", "started_at", "finished_at", check_fields=False)
    def _utc(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat().replace("+00:00", "Z")
