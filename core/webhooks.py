"""Webhook bookkeeping both processes share: queue a delivery with the terminal status, pick the signing secret.

Queuing happens inside :func:`core.jobstate.transition`'s transaction (a transactional outbox), so
every way a job can end — finished by a worker, cancelled through the API, failed by the reaper —
queues exactly one ``job.<status>`` delivery, and a crash cannot lose it. Workers send them
(``worker/webhooks.py``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.ids import new_id
from core.models import JobRow, TenantWebhookSecret, WebhookDelivery, utcnow

SECRET_PREFIX = "whsec_"


def queue_webhook(session: Session, job_id: str, status: str) -> None:
    """Stage a pending ``job.<status>`` delivery when the job asked for a webhook (the caller commits)."""
    row = session.execute(select(JobRow.spec, JobRow.tenant_id).where(JobRow.id == job_id)).one_or_none()
    if row is None:
        return
    url = (row.spec or {}).get("webhook_url")
    if url:
        session.add(
            WebhookDelivery(
                id=new_id("whd"), job_id=job_id, tenant_id=row.tenant_id, event=f"job.{status}", url=url, status="pending", attempts=0, next_attempt_at=utcnow()
            )
        )


def signing_secret(session: Session, settings: Settings, tenant: str) -> str | None:
    own = session.scalar(select(TenantWebhookSecret.secret).where(TenantWebhookSecret.tenant_id == tenant))
    return own or settings.webhook_secret
