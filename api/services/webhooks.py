"""Webhook bookkeeping on the API side: queue a delivery with the terminal status, pick the signing secret.

Queuing happens inside :func:`api.jobstate.transition`'s transaction (a transactional outbox), so
every way a job can end — finished by a worker, cancelled through the API, failed by the reaper —
queues exactly one ``job.<status>`` delivery, and a crash cannot lose it. Workers send them
(``worker/webhooks.py``).
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.core.config import Settings
from api.errors import ApiError
from api.ids import new_id
from api.models import JobRow, TenantWebhookSecret, WebhookDelivery, utcnow

SECRET_PREFIX = "whsec_"


def queue_webhook(session: Session, job_id: str, status: str) -> None:
    """Stage a pending ``job.<status>`` delivery when the job asked for a webhook (the caller commits)."""
    row = session.execute(select(JobRow.spec, JobRow.tenant_id).where(JobRow.id == job_id)).one_or_none()
    url = (row.spec or {}).get("webhook_url") if row is not None else None
    if url:
        session.add(
            WebhookDelivery(
                id=new_id("whd"), job_id=job_id, tenant_id=row.tenant_id, event=f"job.{status}", url=url, status="pending", attempts=0, next_attempt_at=utcnow()
            )
        )


def signing_secret(session: Session, settings: Settings, tenant: str) -> str | None:
    own = session.scalar(select(TenantWebhookSecret.secret).where(TenantWebhookSecret.tenant_id == tenant))
    return own or settings.webhook_secret


def require_signing_secret(session: Session, settings: Settings, tenant: str) -> None:
    """Refuse a webhook_url at submit time when nothing could sign its deliveries."""
    if signing_secret(session, settings, tenant) is None:
        raise ApiError(
            422,
            "webhook_url needs a signing secret, and neither this tenant nor the server has one; create one with POST /v1/webhooks/secret, or ask the operator to set DISTILLERY_WEBHOOK_SECRET",
        )


def rotate_secret(session: Session, tenant: str) -> TenantWebhookSecret:
    """Give the tenant a new signing secret (replacing any old one); later deliveries are signed with it."""
    row = session.get(TenantWebhookSecret, tenant)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    if row is None:
        row = TenantWebhookSecret(tenant_id=tenant, secret=secret)
        session.add(row)
    else:
        row.secret, row.created_at = secret, utcnow()
    session.commit()
    return row


def deliveries_for(session: Session, job_id: str) -> list[WebhookDelivery]:
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at)))
