"""``POST /v1/jobs/{id}/pause|resume|retry``: each answers 202 with the job, or 409 naming its status."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from api.deps import SettingsDep, TenantDep, in_session
from api.services import lifecycle
from api.services.jobs import tenant_job
from client.models import Job as JobOut
from core.config import Settings
from core.job_view import job_out

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _pause(session: Session, tenant: str, job_id: str) -> JobOut:
    return job_out(lifecycle.pause_job(session, tenant_job(session, tenant, job_id)))


def _resume(session: Session, tenant: str, job_id: str) -> JobOut:
    return job_out(lifecycle.resume_job(session, tenant_job(session, tenant, job_id)))


def _retry(session: Session, settings: Settings, tenant: str, job_id: str) -> JobOut:
    return job_out(lifecycle.retry_job(session, settings, tenant_job(session, tenant, job_id)))


@router.post("/{job_id}/pause", status_code=202, response_model=JobOut)
async def pause_job(job_id: str, tenant: TenantDep) -> JobOut:
    """A queued job is ``paused`` at once; a running one turns ``pausing``, then ``paused`` once a checkpoint is written and its worker is free."""
    return await in_session(_pause, tenant, job_id)


@router.post("/{job_id}/resume", status_code=202, response_model=JobOut)
async def resume_job(job_id: str, tenant: TenantDep) -> JobOut:
    """A paused job is ``queued`` again and continues from the checkpoint it paused at; its final weights equal an uninterrupted run's."""
    return await in_session(_resume, tenant, job_id)


@router.post("/{job_id}/retry", status_code=202, response_model=JobOut)
async def retry_job(job_id: str, tenant: TenantDep, settings: SettingsDep) -> JobOut:
    """A failed job is ``queued`` again as a new attempt, from its newest checkpoint (from the start when it has none)."""
    return await in_session(_retry, settings, tenant, job_id)
