"""Turn a job row into a kdcore ``JobSpec`` whose paths are local files (fetched from storage).

The row's spec is read back as the typed ``StoredJobSpec`` the API wrote, defaults already resolved.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints import tenant_checkpoint
from core.config import Settings
from core.dataset_uris import s3_endpoint
from core.job_spec import StoredJobSpec
from core.models import ArtifactRow, DatasetRow, JobRow, TeacherRow
from core.storage import ObjectStore
from kdcore.checkpoint_student import write_checkpoint_student
from kdcore.data.archive import ArchiveLimits, extract_archive
from kdcore.errors import BadDataset, BadSpec, BadTeacher
from kdcore.spec import DatasetSource, JobSpec, StudentSpec, TeacherSource


def job_work_dir(settings: Settings, job_id: str) -> Path:
    return settings.work_dir / job_id


def _dataset_source(session: Session, settings: Settings, store: ObjectStore, job: JobRow, spec: StoredJobSpec) -> DatasetSource | None:
    if spec.builtin_dataset is not None:
        return DatasetSource(builtin=spec.builtin_dataset)
    dataset_id = spec.uploaded_dataset
    if dataset_id is None:
        return None
    row = session.scalar(select(DatasetRow).where(DatasetRow.id == dataset_id, DatasetRow.tenant_id == job.tenant_id))
    if row is None:
        raise BadDataset(f"dataset {dataset_id} was deleted after the job was submitted")
    reading = {
        "memory_max_bytes": settings.inmemory_max_bytes,
        "shard_cache": settings.shard_cache_dir,
        "shard_cache_max_bytes": settings.shard_cache_max_bytes,
        "s3_endpoint_url": s3_endpoint(settings),
    }
    if row.layout == "index":  # converted shards or a set registered by reference: kdcore reads it where it lies
        index = store.fetch(row.storage_key, job_work_dir(settings, job.id) / "inputs" / f"{row.id}-index.json")
        return DatasetSource(index=index, **reading)
    cache = settings.extracted_dataset_dir(row.sha256)
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".extract-"))
        try:
            archive = store.fetch(row.storage_key, staging / "archive")
            extract_archive(archive, staging / "tree", ArchiveLimits(settings.archive_max_members, settings.archive_max_bytes, settings.archive_max_ratio))
            (staging / "tree").rename(cache)
        except FileExistsError:
            pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return DatasetSource(root=cache, **reading)


def _teacher_source(store: ObjectStore, row: TeacherRow, dest: Path) -> TeacherSource:
    path = store.fetch(row.storage_key, dest / Path(row.storage_key).name)
    return TeacherSource(
        path=path,
        format=row.format,
        arch=row.arch,
        arch_kwargs=row.arch_kwargs or {},
        num_classes=row.num_classes,
        input_size=tuple(row.input_size),
        mean=tuple(row.mean) if row.mean else None,
        std=tuple(row.std) if row.std else None,
        name=row.name or row.id,
    )


def _student_init(session: Session, store: ObjectStore, job: JobRow, init: str | None, dest: Path) -> Path | None:
    if init is None:
        return None
    if init.startswith("ckpt_"):
        found = tenant_checkpoint(session, job.tenant_id, init)
        if found is None:
            raise BadSpec(f"student.init {init} no longer exists (its job was deleted, or the checkpoint was superseded)")
        checkpoint = store.fetch(found[0].storage_key, dest / f"{init}.pt")
        return write_checkpoint_student(checkpoint, dest / f"{init}.safetensors")
    model: type[TeacherRow] | type[ArtifactRow] = TeacherRow if init.startswith("tch_") else ArtifactRow
    storage_key = session.scalar(select(model.storage_key).where(model.id == init, model.tenant_id == job.tenant_id))
    if storage_key is None:
        raise BadSpec(f"student.init {init} no longer exists")
    return store.fetch(storage_key, dest / Path(storage_key).name)


def build_job_spec(session: Session, settings: Settings, store: ObjectStore, job: JobRow) -> JobSpec:
    spec = StoredJobSpec.model_validate(job.spec)
    work = job_work_dir(settings, job.id)
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    rows = {r.id: r for r in session.scalars(select(TeacherRow).where(TeacherRow.id.in_(spec.teachers), TeacherRow.tenant_id == job.tenant_id))}
    missing = [t for t in spec.teachers if t not in rows]
    if missing:
        raise BadTeacher(f"teacher {missing[0]} was deleted after the job was submitted")
    return JobSpec(
        name=job.name,
        method=job.method,
        teachers=[_teacher_source(store, rows[t], inputs) for t in spec.teachers],
        student=StudentSpec(arch=spec.student.arch, arch_kwargs=spec.student.arch_kwargs, init=_student_init(session, store, job, spec.student.init, inputs)),
        dataset=_dataset_source(session, settings, store, job, spec),
        hyperparams=spec.hyperparams,
        training=spec.training,
        export=spec.export,
        work_dir=work,
    )
