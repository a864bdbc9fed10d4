"""Webhook deliveries recorded on a job, and the tenant's own signing secret."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from api.deps import TenantDep, in_session
from api.services import webhooks as service
from api.services.jobs import tenant_job
from client.models import WebhookDelivery as WebhookDeliveryOut
from client.models import WebhookDeliveryList
from client.models import WebhookSecret as WebhookSecretOut

router = APIRouter(tags=["webhooks"])


@router.get("/v1/jobs/{job_id}/webhooks", response_model=WebhookDeliveryList)
async def job_webhooks(job_id: str, tenant: TenantDep) -> WebhookDeliveryList:
    """Every ``job.<status>`` delivery for the job: pending (with its next attempt), delivered, or failed after all retries."""
    return await in_session(_deliveries, tenant, job_id)


def _deliveries(session: Session, tenant: str, job_id: str) -> WebhookDeliveryList:
    tenant_job(session, tenant, job_id)
    return WebhookDeliveryList(items=[WebhookDeliveryOut.model_validate(r, from_attributes=True) for r in service.deliveries_for(session, job_id)])


@router.post("/v1/webhooks/secret", status_code=201, response_model=WebhookSecretOut)
async def rotate_webhook_secret(tenant: TenantDep) -> WebhookSecretOut:
    """Create or replace this tenant's signing secret; it signs every delivery from now on, instead of the server's."""
    return await in_session(_rotate, tenant)


def _rotate(session: Session, tenant: str) -> WebhookSecretOut:
    return WebhookSecretOut.model_validate(service.rotate_secret(session, tenant), from_attributes=True)
