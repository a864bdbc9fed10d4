from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SettingsDep, TenantDep, in_session, in_session_long
from api.errors import ApiError, not_found
from api.json_route import add_json_or_upload_post
from api.schemas.common import Page, PageCursor
from api.schemas.datasets import DatasetFromUri
from api.services import datasets as service
from api.services.input_deletion import delete_unused_input
from api.services.listing import MAX_LIMIT, paginate
from api.services.uploads import spooled_upload
from client.models import Dataset as DatasetOut
from core.config import Settings
from core.jobstate import ACTIVE
from core.models import DatasetRow, JobRow

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _store_dataset(session: Session, settings: Settings, tenant: str, file: UploadFile, name: str | None) -> DatasetOut:
    with spooled_upload(file, settings, ".archive") as (path, size, digest):
        row = service.create_dataset(session, settings, tenant, path, size, digest, name or file.filename)
    return service.dataset_out(row)


def _register(session: Session, settings: Settings, tenant: str, body: DatasetFromUri) -> DatasetOut:
    return service.dataset_out(service.register_dataset(session, settings, tenant, body))


async def register_dataset(body: DatasetFromUri, settings: SettingsDep, tenant: TenantDep) -> DatasetOut:
    return await in_session_long(_register, settings, tenant, body)


async def upload_dataset(
    settings: SettingsDep,
    tenant: TenantDep,
    file: Annotated[UploadFile, File(description=".zip or .tar.gz with train/<class>/<image> and val/<class>/<image>")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetOut:
    """Upload an archive (multipart), or register a set already in object storage (a JSON body with ``uri`` and ``format``)."""
    return await in_session_long(_store_dataset, settings, tenant, file, name)


add_json_or_upload_post(router, json_endpoint=register_dataset, json_model=DatasetFromUri, upload_endpoint=upload_dataset, response_model=DatasetOut)


def _list(session: Session, tenant: str, limit: int, cursor: str | None) -> Page[DatasetOut]:
    rows, next_cursor = paginate(session, select(DatasetRow).where(DatasetRow.tenant_id == tenant), DatasetRow.id, limit, cursor)
    items = [service.dataset_out(r) for r in rows]
    if cursor is None:
        items = service.builtin_datasets() + items
    return Page[DatasetOut](items=items, next_cursor=next_cursor)


@router.get("", response_model=Page[DatasetOut])
async def list_datasets(tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50, cursor: PageCursor = None) -> Page[DatasetOut]:
    return await in_session(_list, tenant, limit, cursor)


def _get(session: Session, tenant: str, dataset_id: str) -> DatasetOut:
    for builtin in service.builtin_datasets():
        if builtin.id == dataset_id:
            return builtin
    row = service.get_dataset(session, tenant, dataset_id)
    if row is None:
        raise not_found("dataset", dataset_id)
    return service.dataset_out(row)


@router.get("/{dataset_id}", response_model=DatasetOut)
async def get_dataset(dataset_id: str, tenant: TenantDep) -> DatasetOut:
    return await in_session(_get, tenant, dataset_id)


def _delete(session: Session, tenant: str, dataset_id: str) -> None:
    if dataset_id.startswith(service.BUILTIN_PREFIX):
        raise ApiError(409, f"{dataset_id} is built in and cannot be deleted")
    row = service.get_dataset(session, tenant, dataset_id)
    if row is None:
        raise not_found("dataset", dataset_id)
    active = session.scalars(select(JobRow).where(JobRow.tenant_id == tenant, JobRow.status.in_(ACTIVE))).all()
    user = next((job.id for job in active if job.spec.get("dataset") == dataset_id), None)
    delete_unused_input(session, tenant, "dataset", row, user)


@router.delete("/{dataset_id}", status_code=204)
async def delete_dataset(dataset_id: str, tenant: TenantDep) -> Response:
    await in_session_long(_delete, tenant, dataset_id)
    return Response(status_code=204)
