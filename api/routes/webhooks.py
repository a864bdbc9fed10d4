"""Webhook deliveries recorded on a job, and the tenant's own signing secret."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import SessionDep, TenantDep
from api.errors import not_found
from api.models import JobRow
from api.schemas.webhooks import WebhookDeliveryList, WebhookDeliveryOut, WebhookSecretOut
from api.services import webhooks as service

router = APIRouter(tags=["webhooks"])


@router.get("/v1/jobs/{job_id}/webhooks", response_model=WebhookDeliveryList)
def job_webhooks(job_id: str, session: SessionDep, tenant: TenantDep) -> WebhookDeliveryList:
    """Every ``job.<status>`` delivery for the job: pending (with its next attempt), delivered, or failed after all retries."""
    if session.scalar(select(JobRow.id).where(JobRow.id == job_id, JobRow.tenant_id == tenant)) is None:
        raise not_found("job", job_id)
    return WebhookDeliveryList(items=[WebhookDeliveryOut.model_validate(r, from_attributes=True) for r in service.deliveries_for(session, job_id)])


@router.post("/v1/webhooks/secret", status_code=201, response_model=WebhookSecretOut)
def rotate_webhook_secret(session: SessionDep, tenant: TenantDep) -> WebhookSecretOut:
    """Create or replace this tenant's signing secret; it signs every delivery from now on, instead of the server's."""
    return WebhookSecretOut.model_validate(service.rotate_secret(session, tenant), from_attributes=True)
