from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_serializer

from api.schemas.common import Timestamped


class WebhookDeliveryOut(Timestamped):
    id: str = Field(description="also the payload's 'id' and the Distillery-Delivery header, so receivers can drop duplicates")
    event: str = Field(description="job.succeeded | job.failed | job.cancelled")
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None

    @field_serializer("next_attempt_at", "delivered_at")
    def _utc_times(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryOut]


class WebhookSecretOut(Timestamped):
    secret: str = Field(description="the HMAC-SHA256 key that signs this tenant's webhook deliveries from now on")
