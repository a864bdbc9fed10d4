from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import TenantDep, in_session
from api.errors import not_found
from core.models import ArtifactRow
from core.storage import get_store

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
MEDIA = {"report": "text/html; charset=utf-8", "student_onnx": "application/octet-stream"}


def _artifact(session: Session, tenant: str, artifact_id: str) -> ArtifactRow:
    row = session.scalar(select(ArtifactRow).where(ArtifactRow.id == artifact_id, ArtifactRow.tenant_id == tenant))
    if row is None:
        raise not_found("artifact", artifact_id)
    return row


@router.get("/{artifact_id}", response_class=StreamingResponse, responses={200: {"content": {"application/octet-stream": {}}}})
async def download_artifact(artifact_id: str, request: Request, tenant: TenantDep) -> Response:
    row = await in_session(_artifact, tenant, artifact_id)
    etag = f'"{row.sha256}"'
    headers = {"ETag": etag, "Content-Disposition": f'attachment; filename="{row.filename}"', "Content-Length": str(row.size_bytes)}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    handle = await run_in_threadpool(get_store().open, row.storage_key)

    def chunks():
        with handle:
            while data := handle.read(1 << 20):
                yield data

    return StreamingResponse(chunks(), media_type=MEDIA.get(row.kind, "application/octet-stream"), headers=headers)
