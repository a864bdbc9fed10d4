"""Job submission: every check that can be made before training, then one row and one message."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import Row, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import ApiError, not_found
from api.schemas.jobs import JobCreate
from api.services.datasets import get_dataset
from api.services.job_estimate import check_estimate
from core.checkpoints import tenant_checkpoint
from core.config import Settings
from core.ids import new_id
from core.job_spec import BUILTIN_PREFIX, StoredJobSpec
from core.job_view import JOB_VIEW_COLUMNS
from core.jobstate import ACTIVE, WORKER_HELD, transition
from core.models import ArtifactRow, JobEvent, JobRow, JobTeacher, TeacherRow, utcnow
from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info
from kdcore.methods import get_method
from kdcore.models.features import arch_supports_features
from kdcore.models.registry import create_model, is_model
from kdcore.spec import TrainingConfig

T = TypeVar("T")


def _hyperparam_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": ["hyperparams", *[str(p) for p in e["loc"]]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def validate(session: Session, tenant: str, body: JobCreate) -> tuple[StoredJobSpec, list[TeacherRow]]:
    """Resolve and check the request; return the stored spec (defaults filled in) and its teachers."""
    try:
        method = get_method(body.method)
    except KeyError as exc:
        raise ApiError(422, f"unknown method {body.method!r}; GET /v1/methods lists the available ones") from exc
    try:
        hparams = method.Hyperparams(**body.hyperparams)
    except ValidationError as exc:
        errors = _hyperparam_errors(exc)
        first = errors[0]
        raise ApiError(422, f"hyperparams for {method.name!r}: {'.'.join(first['loc'][1:])}: {first['msg']}", errors) from exc
    low, high = method.teacher_count
    count = len(body.teachers)
    if count < low or (high is not None and count > high):
        wanted = str(low) if low == high else f"{low} to {high if high is not None else 'any number of'}"
        raise ApiError(422, f"method {method.name!r} takes {wanted} teacher(s); the job names {count}")
    teachers = []
    for teacher_id in body.teachers:
        row = session.scalar(select(TeacherRow).where(TeacherRow.id == teacher_id, TeacherRow.tenant_id == tenant))
        if row is None:
            raise ApiError(422, f"teacher {teacher_id!r} does not exist for this tenant; upload it with POST /v1/teachers")
        if (method.needs_teacher_features or method.needs_batchnorm_statistics) and not row.supports_features:
            need = "BatchNorm statistics" if method.needs_batchnorm_statistics else "intermediate features"
            raise ApiError(
                422,
                f"method {method.name!r} needs the teacher's {need}, but teacher {teacher_id} ({row.format}) is logits-only; upload it as safetensors with its 'arch'",
            )
        teachers.append(row)
    if not is_model(body.student.arch):
        raise ApiError(422, f"unknown student architecture {body.student.arch!r}; use a timm or torchvision model name or a kdcore one such as cifar_resnet8x4")
    if body.student.arch_kwargs:
        _check_arch_kwargs(body.student.arch, body.student.arch_kwargs)
    if (method.needs_teacher_features or method.needs_student_features) and not arch_supports_features(body.student.arch, body.student.arch_kwargs):
        raise ApiError(
            422,
            f"method {method.name!r} reads the student's stage features, but {body.student.arch!r} exposes none; pick a timm, torchvision ResNet or kdcore architecture",
        )
    num_classes = _dataset_classes(session, tenant, body)
    if body.dataset is None and method.needs_dataset:
        raise ApiError(422, f"method {method.name!r} needs a dataset; give 'dataset' (an uploaded ds_… ID or builtin:digits)")
    for row in teachers:
        if num_classes is not None and row.num_classes != num_classes:
            raise ApiError(422, f"teacher {row.id} has {row.num_classes} classes but dataset {body.dataset} has {num_classes}; they must match")
    if len({row.num_classes for row in teachers}) > 1:
        raise ApiError(422, "the teachers disagree on the number of classes; all must produce the same logits")
    if body.student.init is not None:
        _check_init(session, tenant, body.student.init, body.student.arch, body.student.arch_kwargs)
    training = body.training
    if training.input_size is None and teachers:
        training = training.model_copy(update={"input_size": tuple(teachers[0].input_size)})
    stored = StoredJobSpec.model_validate({**body.model_dump(), "hyperparams": hparams.model_dump(mode="json"), "training": training})
    check_estimate(stored, teachers, num_classes, _train_samples(session, tenant, body))
    return stored, teachers


def _train_samples(session: Session, tenant: str, body: JobCreate) -> int | None:
    """The training split's size, when the dataset says it (the cost model's number of images per epoch)."""
    if body.dataset is None:
        return None
    if (name := body.builtin_dataset) is not None:
        return int(builtin_info(name)["splits"]["train"])
    row = get_dataset(session, tenant, body.dataset)
    count = (row.splits or {}).get("train") if row is not None else None
    return count if isinstance(count, int) else None


def _dataset_classes(session: Session, tenant: str, body: JobCreate) -> int | None:
    dataset = body.dataset
    if dataset is None:
        return None
    name = body.builtin_dataset
    if name is not None:
        if name not in BUILTIN_DATASETS:
            raise ApiError(422, f"unknown built-in dataset {dataset!r}; known: {', '.join(BUILTIN_PREFIX + n for n in sorted(BUILTIN_DATASETS))}")
        return len(builtin_info(name)["classes"])
    row = get_dataset(session, tenant, dataset)
    if row is None:
        raise ApiError(422, f"dataset {dataset!r} does not exist for this tenant; upload it with POST /v1/datasets or use builtin:digits")
    return row.num_classes


def _check_arch_kwargs(arch: str, arch_kwargs: Mapping[str, Any]) -> None:
    error = _arch_kwargs_error(arch, json.dumps(dict(arch_kwargs), sort_keys=True))
    if error is not None:
        raise ApiError(422, f"student.arch_kwargs: {error}")


@lru_cache(maxsize=256)
def _arch_kwargs_error(arch: str, arch_kwargs_json: str) -> str | None:
    """Why ``arch`` cannot be built with these constructor arguments (built once per pair), or None."""
    try:
        create_model(arch, num_classes=10, arch_kwargs=json.loads(arch_kwargs_json))
    except (ValueError, TypeError, AssertionError) as exc:
        return str(exc)[:500]
    return None


def _check_init(session: Session, tenant: str, init: str, arch: str, arch_kwargs: Mapping[str, Any]) -> None:
    if init.startswith("ckpt_"):
        found = tenant_checkpoint(session, tenant, init)
        if found is None:
            raise ApiError(422, f"student.init {init!r} is not a checkpoint of this tenant; GET /v1/jobs/{{id}}/checkpoints lists a job's checkpoints")
        source = StoredJobSpec.model_validate(found[1].spec).student
        if source.arch != arch:
            raise ApiError(422, f"student.init {init!r} holds a {source.arch} student but student.arch is {arch!r}; use the same architecture")
        if source.arch_kwargs != arch_kwargs:
            raise ApiError(
                422,
                f"student.init {init!r} holds a student built with arch_kwargs {source.arch_kwargs} but student.arch_kwargs is {dict(arch_kwargs)}; use the same",
            )
        return
    if init.startswith("tch_"):
        row = session.scalar(select(TeacherRow).where(TeacherRow.id == init, TeacherRow.tenant_id == tenant))
        if row is None or row.format not in ("safetensors", "state_dict"):
            raise ApiError(422, f"student.init {init!r} must be a safetensors or state_dict teacher upload of this tenant")
        return
    artifact = session.scalar(select(ArtifactRow).where(ArtifactRow.id == init, ArtifactRow.tenant_id == tenant))
    if artifact is None or artifact.kind != "student_safetensors":
        raise ApiError(
            422, f"student.init {init!r} must be a tch_… weights upload, a student_safetensors artifact (art_…) or a checkpoint (ckpt_…) of this tenant"
        )


def _check_scale(settings: Settings, training: TrainingConfig) -> None:
    """Refuse what no worker of this deployment could run: several nodes without a Ray cluster, a batch that does not split."""
    if training.nodes > 1 and not settings.ray_address:
        raise ApiError(
            422,
            "training.nodes > 1 runs one job across the machines of a Ray cluster, and this deployment has none; "
            "the operator enables it by setting DISTILLERY_RAY_ADDRESS (README, 'Three levels of scale'), or use training.devices for the GPUs of one machine",
        )
    if training.devices != "auto" and training.batch_size % (ranks := training.devices * training.nodes):
        raise ApiError(
            422, f"training.batch_size {training.batch_size} is the global batch and must split evenly over {ranks} devices; use a multiple of {ranks}"
        )


def request_hash(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def create_job(session: Session, settings: Settings, tenant: str, body: JobCreate, idempotency_key: str | None) -> tuple[JobRow, bool]:
    """Insert the job (or return the one this idempotency key made); True when newly created."""
    digest = request_hash(body)
    if idempotency_key:
        existing = _by_idempotency_key(session, tenant, idempotency_key, digest)
        if existing is not None:
            return existing, False
    active = session.execute(select(func.count()).select_from(JobRow).where(JobRow.tenant_id == tenant, JobRow.status.in_(ACTIVE))).scalar_one()
    if active >= settings.tenant_max_active_jobs:
        raise ApiError(
            429,
            f"this tenant already has {active} queued or running jobs (paused ones count), the limit; wait for some to finish or cancel some",
            headers={"Retry-After": "30"},
        )
    _check_scale(settings, body.training)
    spec, teachers = validate(session, tenant, body)
    job = JobRow(
        id=new_id("job"),
        tenant_id=tenant,
        name=body.name,
        method=body.method,
        status="queued",
        spec=spec.model_dump(mode="json"),
        progress={},
        metrics={},
        max_attempts=settings.max_attempts,
        idempotency_key=idempotency_key,
        request_hash=digest,
        enqueued_at=utcnow(),
    )
    try:
        session.add(job)
        session.flush()
        session.add_all([JobTeacher(job_id=job.id, teacher_id=t.id) for t in {t.id: t for t in teachers}.values()])
        session.add(JobEvent(job_id=job.id, kind="status", name="queued"))
        session.commit()
    except IntegrityError:  # a concurrent request with the same Idempotency-Key inserted first (raised at flush or commit)
        session.rollback()
        existing = _by_idempotency_key(session, tenant, idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return job, True


def _by_idempotency_key(session: Session, tenant: str, key: str, digest: str) -> JobRow | None:
    row = session.scalar(select(JobRow).where(JobRow.tenant_id == tenant, JobRow.idempotency_key == key))
    if row is None:
        return None
    if row.request_hash != digest:
        raise ApiError(422, f"Idempotency-Key {key!r} was already used with a different request body; use a new key for a different job")
    return row


def _found(found: T | None, job_id: str) -> T:
    if found is None:
        raise not_found("job", job_id)
    return found


def tenant_job(session: Session, tenant: str, job_id: str) -> JobRow:
    """The tenant's job, or 404 (a job of another tenant is not found either)."""
    return _found(session.scalar(select(JobRow).where(JobRow.id == job_id, JobRow.tenant_id == tenant)), job_id)


def tenant_job_view(session: Session, tenant: str, job_id: str) -> Row[Any]:
    """Only what ``job_out`` shows of the tenant's job, or 404: a status poll reads no more than it answers."""
    return _found(session.execute(select(*JOB_VIEW_COLUMNS).where(JobRow.id == job_id, JobRow.tenant_id == tenant)).one_or_none(), job_id)


def require_tenant_job(session: Session, tenant: str, job_id: str) -> None:
    """404 unless the tenant has this job, reading only its ID: for routes that answer with what belongs to it."""
    _found(session.scalar(select(JobRow.id).where(JobRow.id == job_id, JobRow.tenant_id == tenant)), job_id)


def cancel_job(session: Session, job: JobRow) -> JobRow:
    """Queued and paused jobs end at once; running and pausing ones are flagged and stop at their next step."""
    if transition(
        session,
        job.id,
        {"queued", "paused"},
        "cancelled",
        cancel_requested=True,
        error_code="cancelled",
        error_message="cancelled by request while no worker ran it",
    ):
        pass
    elif job.status in WORKER_HELD:
        session.execute(
            update(JobRow).where(JobRow.id == job.id, JobRow.status.in_(WORKER_HELD)).values(cancel_requested=True).execution_options(synchronize_session=False)
        )
        session.commit()
    session.refresh(job)
    return job
