"""Webhook dispatcher, run by every worker's main process: sends due deliveries, retries with backoff.

A delivery row is queued with the job's terminal status (``api.services.webhooks``). Each attempt
is claimed with a conditional update on ``attempts`` (so two workers never send the same attempt)
and leases the row until the request's timeout has passed, so a worker that dies mid-attempt
leaves it for another. The body is fixed at the first attempt: retries are byte-identical and
carry the same ``id``, which receivers use to drop duplicates. Any non-2xx answer or network error
is retried after ``DISTILLERY_WEBHOOK_BACKOFF_S × 2^(attempt-1)`` seconds, up to
``DISTILLERY_WEBHOOK_MAX_ATTEMPTS`` attempts; then the delivery is ``failed``. Each attempt resolves
the URL again and connects only to an address :mod:`core.url_guard` accepts (the one it checked);
an address it refuses fails the delivery at once, before any packet is sent.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import httpx
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from client.webhook_signing import SIGNATURE_HEADER, sign
from core.config import Settings, get_settings
from core.db import rows_matched, session_scope
from core.job_view import iso_time, job_out
from core.models import ArtifactRow, JobRow, WebhookDelivery, utcnow
from core.url_guard import UrlRefused, check_url, pinned_request
from core.webhooks import signing_secret

log = logging.getLogger("distillery.worker.webhooks")
_stop = threading.Event()
BATCH = 20


def payload(session: Session, delivery: WebhookDelivery) -> str:
    """``{"id","type","created_at","data":{"job":{…},"artifacts":[…]}}``: the job as GET /v1/jobs/{id} shows it."""
    job = session.get_one(JobRow, delivery.job_id)
    artifacts = session.scalars(select(ArtifactRow).where(ArtifactRow.job_id == delivery.job_id).order_by(ArtifactRow.id)).all()
    data = {
        "job": job_out(job).model_dump(mode="json"),
        "artifacts": [{"id": a.id, "kind": a.kind, "filename": a.filename, "size_bytes": a.size_bytes, "sha256": a.sha256} for a in artifacts],
    }
    return json.dumps({"id": delivery.id, "type": delivery.event, "created_at": iso_time(delivery.created_at), "data": data}, separators=(",", ":"))


def _claim(settings: Settings, delivery_id: str, seen_attempts: int) -> tuple[WebhookDelivery, str | None] | None:
    """Take the next attempt of a delivery (None if another worker took it first); returns it with its secret."""
    lease = utcnow() + timedelta(seconds=settings.webhook_timeout_s + 30)
    with session_scope() as session:
        claimed = rows_matched(
            session,
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending", WebhookDelivery.attempts == seen_attempts)
            .values(attempts=seen_attempts + 1, next_attempt_at=lease)
            .execution_options(synchronize_session=False),
        )
        if claimed != 1:
            return None
        delivery = session.get_one(WebhookDelivery, delivery_id)
        if delivery.body is None:
            delivery.body = payload(session, delivery)
        secret = signing_secret(session, settings, delivery.tenant_id)
        session.flush()
        session.expunge(delivery)
        return delivery, secret


def _send(settings: Settings, delivery: WebhookDelivery, secret: str) -> tuple[int | None, str | None]:
    """POST to the address the URL resolves to now, checked first (``UrlRefused``) and pinned, so DNS rebinding cannot redirect it."""
    checked = check_url(delivery.url, settings.webhook_allow_networks)
    assert delivery.body is not None  # _claim fixes the body before handing the delivery out
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Distillery-Webhooks/1",
        "Distillery-Event": delivery.event,
        "Distillery-Delivery": delivery.id,
        SIGNATURE_HEADER: sign(secret, body),
    }
    try:
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
            response = client.send(pinned_request(checked, "POST", headers, body))
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"the receiver answered HTTP {response.status_code}: {response.text[:200]}"


def attempt(settings: Settings, delivery_id: str, seen_attempts: int) -> None:
    claimed = _claim(settings, delivery_id, seen_attempts)
    if claimed is None:
        return
    delivery, secret = claimed
    final = secret is None
    code: int | None
    error: str | None
    if secret is None:
        code, error = None, "no signing secret: set DISTILLERY_WEBHOOK_SECRET or create one with POST /v1/webhooks/secret"
    else:
        try:
            code, error = _send(settings, delivery, secret)
        except UrlRefused as exc:  # a lookup failure may pass; an address outside the allowed ones will not
            code, error, final = None, f"refused before connecting ({exc.rule}): {exc}", exc.rule != "unresolvable"
    values: dict = {"last_status_code": code, "last_error": error}
    if error is None:
        values.update(status="delivered", delivered_at=utcnow(), next_attempt_at=None)
    elif delivery.attempts >= settings.webhook_max_attempts or final:
        values.update(status="failed", next_attempt_at=None)
    else:
        values.update(next_attempt_at=utcnow() + timedelta(seconds=settings.webhook_backoff_s * 2 ** (delivery.attempts - 1)))
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == delivery.attempts)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    log.info(
        "webhook %s %s for job %s attempt %d: %s",
        delivery.id,
        delivery.event,
        delivery.job_id,
        delivery.attempts,
        values.get("status", "will retry") + (f" ({error})" if error else ""),
        extra={"job_id": delivery.job_id},
    )


def deliver_due() -> int:
    """One pass over the deliveries whose next attempt is due; returns how many it tried."""
    settings = get_settings()
    with session_scope() as session:
        due = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= utcnow())
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(BATCH)
        ).all()
    for delivery_id, attempts in due:
        attempt(settings, delivery_id, attempts)
    return len(due)


def _loop() -> None:
    interval = get_settings().webhook_poll_interval_s
    while not _stop.wait(interval):
        try:
            while deliver_due() == BATCH and not _stop.is_set():
                pass
        except Exception as exc:  # database briefly down: try again next tick
            log.warning("webhook dispatch failed: %s", exc)


@worker_ready.connect
def _start(**_: object) -> None:
    threading.Thread(target=_loop, name="distillery-webhooks", daemon=True).start()


@worker_shutdown.connect
def _stop_loop(**_: object) -> None:
    _stop.set()
