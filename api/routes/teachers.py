from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SettingsDep, TenantDep, in_session, in_session_long
from api.errors import not_found
from api.json_route import add_json_or_upload_post
from api.schemas.common import Page, PageCursor
from api.schemas.teachers import TeacherFromUri
from api.services import teachers as service
from api.services.input_deletion import delete_unused_input
from api.services.listing import MAX_LIMIT, paginate
from api.services.teacher_sources import spooled_from_uri
from api.services.uploads import spooled_upload
from client.models import Teacher as TeacherOut
from core.config import Settings
from core.jobstate import ACTIVE
from core.models import JobRow, JobTeacher, TeacherRow

router = APIRouter(prefix="/v1/teachers", tags=["teachers"])


def _store_teacher(
    session: Session,
    settings: Settings,
    tenant: str,
    file: UploadFile,
    format: str,
    arch: str | None,
    num_classes: int,
    input_size: str,
    mean: str | None,
    std: str | None,
    name: str | None,
    arch_kwargs: str | None,
) -> TeacherOut:
    size_chw, mean_v, std_v = service.checked_description(settings, format, arch, input_size, mean, std)
    kwargs = service.checked_arch_kwargs(arch_kwargs, format)
    with spooled_upload(file, settings, service.SUFFIX[format]) as (path, size, digest):
        row = service.create_teacher(session, tenant, path, size, digest, format, arch, num_classes, size_chw, mean_v, std_v, name, arch_kwargs=kwargs)
    return TeacherOut.model_validate(row, from_attributes=True)


def _register_from_uri(session: Session, settings: Settings, tenant: str, body: TeacherFromUri) -> TeacherOut:
    size_chw, mean_v, std_v = service.checked_description(settings, body.format, body.arch, body.input_size, body.mean, body.std)
    kwargs = service.checked_arch_kwargs(body.arch_kwargs, body.format)
    with spooled_from_uri(body.uri, body.format, settings, tenant) as (path, size, digest):
        row = service.create_teacher(
            session, tenant, path, size, digest, body.format, body.arch, body.num_classes, size_chw, mean_v, std_v, body.name, body.uri, kwargs
        )
    return TeacherOut.model_validate(row, from_attributes=True)


async def register_teacher_from_uri(body: TeacherFromUri, settings: SettingsDep, tenant: TenantDep) -> TeacherOut:
    return await in_session_long(_register_from_uri, settings, tenant, body)


async def upload_teacher(
    settings: SettingsDep,
    tenant: TenantDep,
    file: Annotated[UploadFile, File(description="the model file")],
    format: Annotated[str, Form(description="safetensors | state_dict | onnx | torchscript | exported_program")],
    num_classes: Annotated[int, Form(ge=1, le=100_000)],
    input_size: Annotated[str, Form(description="C,H,W such as 3,32,32")],
    arch: Annotated[str | None, Form()] = None,
    mean: Annotated[str | None, Form()] = None,
    std: Annotated[str | None, Form()] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
    arch_kwargs: Annotated[
        str | None, Form(max_length=2000, description='constructor arguments for arch, a JSON object such as {"img_size": 32, "patch_size": 4}')
    ] = None,
) -> TeacherOut:
    """Upload a model (multipart), or register one by reference (a JSON body with ``uri``, the same fields otherwise)."""
    return await in_session_long(_store_teacher, settings, tenant, file, format, arch, num_classes, input_size, mean, std, name, arch_kwargs)


add_json_or_upload_post(router, json_endpoint=register_teacher_from_uri, json_model=TeacherFromUri, upload_endpoint=upload_teacher, response_model=TeacherOut)


def _list(session: Session, tenant: str, limit: int, cursor: str | None) -> Page[TeacherOut]:
    rows, next_cursor = paginate(session, select(TeacherRow).where(TeacherRow.tenant_id == tenant), TeacherRow.id, limit, cursor)
    return Page[TeacherOut](items=[TeacherOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor)


@router.get("", response_model=Page[TeacherOut])
async def list_teachers(tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50, cursor: PageCursor = None) -> Page[TeacherOut]:
    return await in_session(_list, tenant, limit, cursor)


def _get(session: Session, tenant: str, teacher_id: str) -> TeacherOut:
    row = service.get_teacher(session, tenant, teacher_id)
    if row is None:
        raise not_found("teacher", teacher_id)
    return TeacherOut.model_validate(row, from_attributes=True)


@router.get("/{teacher_id}", response_model=TeacherOut)
async def get_teacher(teacher_id: str, tenant: TenantDep) -> TeacherOut:
    return await in_session(_get, tenant, teacher_id)


def _delete(session: Session, tenant: str, teacher_id: str) -> None:
    row = service.get_teacher(session, tenant, teacher_id)
    if row is None:
        raise not_found("teacher", teacher_id)
    in_use = session.scalar(
        select(JobRow.id).join(JobTeacher, JobTeacher.job_id == JobRow.id).where(JobTeacher.teacher_id == teacher_id, JobRow.status.in_(ACTIVE)).limit(1)
    )
    delete_unused_input(session, tenant, "teacher", row, in_use)


@router.delete("/{teacher_id}", status_code=204)
async def delete_teacher(teacher_id: str, tenant: TenantDep) -> Response:
    await in_session_long(_delete, tenant, teacher_id)
    return Response(status_code=204)
