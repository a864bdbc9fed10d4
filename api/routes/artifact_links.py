"""Presigned download URLs, so large students come straight from the object store instead of through the API."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SettingsDep, TenantDep, in_session
from api.errors import ApiError, not_found
from api.services.events import iso_time
from client.models import ArtifactLink as ArtifactLinkOut
from core.config import Settings
from core.models import ArtifactRow, utcnow
from core.storage import get_store

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


def _link(session: Session, settings: Settings, tenant: str, artifact_id: str) -> ArtifactLinkOut:
    row = session.scalar(select(ArtifactRow).where(ArtifactRow.id == artifact_id, ArtifactRow.tenant_id == tenant))
    if row is None:
        raise not_found("artifact", artifact_id)
    expires = settings.presigned_url_expires_s
    url = get_store().presigned_url(row.storage_key, row.filename, expires)
    if url is None:
        raise ApiError(
            409,
            f"this server keeps objects in a local folder, which cannot sign URLs; download the bytes with GET /v1/artifacts/{artifact_id} (presigned URLs need DISTILLERY_STORAGE_URL=s3://…)",
        )
    return ArtifactLinkOut(
        id=row.id, filename=row.filename, sha256=row.sha256, size_bytes=row.size_bytes, url=url, expires_at=iso_time(utcnow() + timedelta(seconds=expires))
    )


@router.get("/{artifact_id}/url", response_model=ArtifactLinkOut)
async def artifact_url(artifact_id: str, settings: SettingsDep, tenant: TenantDep) -> ArtifactLinkOut:
    return await in_session(_link, settings, tenant, artifact_id)
