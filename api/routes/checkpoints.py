"""``GET /v1/jobs/{id}/checkpoints`` and ``GET /v1/checkpoints/{id}/student``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api.deps import TenantDep, in_session
from api.services import checkpoints as service
from api.services.jobs import tenant_job
from client.models import CheckpointList

router = APIRouter(tags=["checkpoints"])


def _list(session: Session, tenant: str, job_id: str) -> CheckpointList:
    tenant_job(session, tenant, job_id)
    return service.list_checkpoints(session, job_id)


@router.get("/v1/jobs/{job_id}/checkpoints", response_model=CheckpointList)
async def job_checkpoints(job_id: str, tenant: TenantDep) -> CheckpointList:
    """Oldest first: every epoch end's checkpoint (with that epoch's ``val/*`` metrics), and the newest mid-epoch one."""
    return await in_session(_list, tenant, job_id)


@router.get("/v1/checkpoints/{checkpoint_id}/student", response_class=FileResponse, responses={200: {"content": {"application/octet-stream": {}}}})
async def checkpoint_student(checkpoint_id: str, tenant: TenantDep) -> FileResponse:
    """The student at that step as safetensors, with the metadata of a job's ``student_safetensors`` artifact (arch, num_classes, input_size, mean, std)."""
    row = await in_session(service.find_checkpoint, tenant, checkpoint_id)
    folder = Path(tempfile.mkdtemp(prefix="distillery-ckpt-"))
    try:
        path = await run_in_threadpool(service.student_file, row, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(path, media_type="application/octet-stream", filename=path.name, background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))
