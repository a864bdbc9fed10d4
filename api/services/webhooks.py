"""Webhook routes' logic: refuse a webhook_url nothing could sign or that leads inside the network, rotate a tenant's secret, list deliveries."""

from __future__ import annotations

import secrets

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from core.config import Settings
from core.models import TenantWebhookSecret, WebhookDelivery, utcnow
from core.url_guard import UrlRefused, check_url
from core.webhooks import SECRET_PREFIX, signing_secret


def require_signing_secret(session: Session, settings: Settings, tenant: str) -> None:
    """Refuse a webhook_url at submit time when nothing could sign its deliveries."""
    if signing_secret(session, settings, tenant) is None:
        raise ApiError(
            422,
            "webhook_url needs a signing secret, and neither this tenant nor the server has one; create one with POST /v1/webhooks/secret, or ask the operator to set DISTILLERY_WEBHOOK_SECRET",
        )


async def require_public_webhook_url(settings: Settings, url: str) -> None:
    """Refuse (422, naming the rule) a webhook_url whose host is or resolves to a non-public address; the lookup runs off the event loop."""
    try:
        await anyio.to_thread.run_sync(check_url, url, settings.webhook_allow_networks)
    except UrlRefused as exc:
        raise ApiError(
            422,
            f"webhook_url is refused ({exc.rule}): {exc}; use a public receiver, or ask the operator to allow its network in DISTILLERY_WEBHOOK_ALLOW_NETWORKS",
        ) from exc


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
