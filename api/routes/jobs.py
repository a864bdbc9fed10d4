from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from sse_starlette.sse import EventSourceResponse

from api.deps import SettingsDep, TenantDep, in_session, in_session_long
from api.errors import ApiError
from api.schemas.common import MAX_EVENT_SEQ, Page, PageCursor
from api.schemas.jobs import JobCreate
from api.services import job_deletion
from api.services import jobs as service
from api.services.events import event_payload as _event_payload
from api.services.events import iso_time as _iso
from api.services.listing import MAX_LIMIT, paginate
from api.services.webhooks import require_public_webhook_url, require_signing_secret
from client.models import Artifact as ArtifactOut
from client.models import ArtifactList, JobStatus, MetricSeries
from client.models import Job as JobOut
from client.models import MetricPoint as MetricPointOut
from core.config import Settings
from core.job_view import JOB_VIEW_COLUMNS, job_out
from core.jobstate import SETTLED
from core.models import ArtifactRow, JobEvent, JobRow
from core.queue import enqueue_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _submit(session: Session, settings: Settings, tenant: str, body: JobCreate, idempotency_key: str | None) -> tuple[JobOut, bool]:
    if body.registry is not None and not (settings.mlflow_tracking_uri or "").startswith(("http://", "https://")):
        raise ApiError(
            422,
            "this server has no MLflow tracking server configured (MLFLOW_TRACKING_URI is not an http(s) URL), so 'registry' cannot be honoured; remove 'registry' or ask the operator to set MLFLOW_TRACKING_URI",
        )
    job, created = service.create_job(session, settings, tenant, body, idempotency_key)
    if created:
        enqueue_job(job.id)
    return job_out(job), created


@router.post("", status_code=201, response_model=JobOut)
async def create_job(
    body: JobCreate, response: Response, settings: SettingsDep, tenant: TenantDep, idempotency_key: Annotated[str | None, Header(max_length=200)] = None
) -> JobOut:
    if body.webhook_url is not None:  # the secret first: a URL nothing could sign is refused without a DNS lookup
        await in_session(require_signing_secret, settings, tenant)
        await require_public_webhook_url(settings, str(body.webhook_url))
    job, created = await in_session(_submit, settings, tenant, body, idempotency_key)
    if not created:
        response.status_code = 200
    return job


def _list(session: Session, tenant: str, status: str | None, limit: int, cursor: str | None) -> Page[JobOut]:
    query = select(*JOB_VIEW_COLUMNS).where(JobRow.tenant_id == tenant)
    if status:
        query = query.where(JobRow.status == status)
    rows, next_cursor = paginate(session, query, JobRow.id, limit, cursor)
    return Page[JobOut](items=[job_out(r) for r in rows], next_cursor=next_cursor)


@router.get("", response_model=Page[JobOut])
async def list_jobs(
    tenant: TenantDep, status: JobStatus | None = None, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50, cursor: PageCursor = None
) -> Page[JobOut]:
    return await in_session(_list, tenant, status, limit, cursor)


def _get(session: Session, tenant: str, job_id: str) -> JobOut:
    return job_out(service.tenant_job_view(session, tenant, job_id))


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, tenant: TenantDep) -> JobOut:
    return await in_session(_get, tenant, job_id)


def _cancel(session: Session, tenant: str, job_id: str) -> JobOut:
    job = service.tenant_job(session, tenant, job_id)
    job_deletion.refuse_cancel_of_ended(job)
    return job_out(service.cancel_job(session, job))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut)
async def cancel_job(job_id: str, tenant: TenantDep) -> JobOut:
    return await in_session(_cancel, tenant, job_id)


def _metrics(session: Session, tenant: str, job_id: str, name: str | None) -> MetricSeries:
    service.require_tenant_job(session, tenant, job_id)
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "metric")
    if name:
        query = query.where(JobEvent.name == name)
    rows = session.scalars(query.order_by(JobEvent.seq)).all()
    return MetricSeries(series=[MetricPointOut(name=r.name, step=r.step, epoch=r.epoch, value=r.value, time=_iso(r.time)) for r in rows])


@router.get("/{job_id}/metrics", response_model=MetricSeries)
async def job_metrics(job_id: str, tenant: TenantDep, name: str | None = None) -> MetricSeries:
    return await in_session(_metrics, tenant, job_id, name)


def _artifacts(session: Session, tenant: str, job_id: str) -> ArtifactList:
    service.require_tenant_job(session, tenant, job_id)
    rows = session.scalars(select(ArtifactRow).where(ArtifactRow.job_id == job_id).order_by(ArtifactRow.id)).all()
    return ArtifactList(
        items=[ArtifactOut(id=r.id, kind=r.kind, filename=r.filename, size_bytes=r.size_bytes, sha256=r.sha256, metadata=r.meta or {}) for r in rows]
    )


@router.get("/{job_id}/artifacts", response_model=ArtifactList)
async def job_artifacts(job_id: str, tenant: TenantDep) -> ArtifactList:
    return await in_session(_artifacts, tenant, job_id)


def _events_after(session: Session, job_id: str, after: int) -> tuple[list[dict], str]:
    rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after).order_by(JobEvent.seq).limit(500)).all()
    status = session.scalar(select(JobRow.status).where(JobRow.id == job_id)) or "failed"
    return [_event_payload(r) for r in rows], status


@router.get("/{job_id}/events", response_class=EventSourceResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(job_id: str, tenant: TenantDep, settings: SettingsDep, after: Annotated[int, Query(ge=0, le=MAX_EVENT_SEQ)] = 0) -> EventSourceResponse:
    """Server-Sent Events: the history so far, then live status changes, phases and metric points until the job ends or pauses."""
    await in_session(service.tenant_job, tenant, job_id)

    async def stream() -> AsyncIterator[dict]:
        cursor = after
        while True:
            events, status = await in_session(_events_after, job_id, cursor)
            for event in events:
                cursor = event["seq"]
                yield {"event": event["type"], "id": str(event["seq"]), "data": json.dumps(event)}
            if not events and status in SETTLED:
                yield {"event": "end", "data": json.dumps({"status": status})}
                return
            if not events:
                await asyncio.sleep(0.5)

    return EventSourceResponse(stream(), ping=settings.sse_ping_s)


@router.delete("/{job_id}", status_code=204, response_class=Response)
async def delete_job(job_id: str, tenant: TenantDep, settings: SettingsDep) -> Response:
    """Delete an ended (or paused) job with its artifacts, checkpoints and work folder; 409 while a worker may run it, 404 afterwards."""
    await in_session_long(job_deletion.delete_job, settings, tenant, job_id)
    return Response(status_code=204)
