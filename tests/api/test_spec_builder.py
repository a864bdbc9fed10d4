"""The worker reads back exactly the typed spec the API stored: defaults resolved once, at submission."""

from __future__ import annotations

import io

import pytest
from image_trees import digits_tree, zip_tree
from sqlalchemy import select
from teacher_uploads import upload_untrained_grey_teacher


def test_stored_spec_round_trips_into_a_kdcore_job_spec(api, app_settings):
    from core.db import session_scope
    from core.job_spec import StoredJobSpec
    from core.models import JobRow
    from core.storage import get_store
    from worker.spec_builder import build_job_spec

    body = {"method": "supervised", "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 2, "lr": 0.1}}
    job_id = api.post("/v1/jobs", json=body).json()["id"]
    with session_scope() as session:
        row = session.scalar(select(JobRow).where(JobRow.id == job_id))
        stored = StoredJobSpec.model_validate(row.spec)
        spec = build_job_spec(session, app_settings, get_store(), row)
    assert stored.builtin_dataset == "digits" and stored.uploaded_dataset is None
    assert spec.dataset is not None and spec.dataset.builtin == "digits"
    assert spec.training == stored.training and spec.training.learning_rate == 0.1
    assert spec.hyperparams == stored.hyperparams == {"preset": None, "label_smoothing": 0.0}
    assert spec.student.arch == "cifar_resnet8" and spec.work_dir == app_settings.work_dir / job_id


def _built(job_id: str, app_settings):
    from core.db import session_scope
    from core.models import JobRow
    from core.storage import get_store
    from worker.spec_builder import build_job_spec

    with session_scope() as session:
        row = session.scalar(select(JobRow).where(JobRow.id == job_id))
        return build_job_spec(session, app_settings, get_store(), row)


@pytest.fixture(scope="module")
def uploads(api, tmp_path_factory) -> dict[str, str]:
    """An uploaded teacher (untrained, 1×8×8) and an uploaded ImageFolder zip of digits: their IDs."""
    folder = tmp_path_factory.mktemp("spec-builder")
    archive = zip_tree(digits_tree(folder / "tree", size=8, per_class=4), folder / "digits.zip")
    dataset = api.post("/v1/datasets", files={"file": ("digits.zip", io.BytesIO(archive.read_bytes()))})
    assert dataset.status_code == 201, dataset.text
    return {"teacher": upload_untrained_grey_teacher(api), "dataset": dataset.json()["id"]}


def test_uploads_become_local_files_and_the_teacher_rows_fields_travel(api, app_settings, uploads):
    body = {
        "method": "kd",
        "teachers": [uploads["teacher"]],
        "student": {"arch": "cifar_resnet8", "init": uploads["teacher"]},
        "dataset": uploads["dataset"],
        "training": {"epochs": 1},
    }
    created = api.post("/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    spec = _built(job_id, app_settings)
    (teacher,) = spec.teachers
    assert teacher.path.is_file()  # the local store serves its own file in place; S3 would download it under the job's inputs/
    assert (teacher.arch, teacher.num_classes, teacher.input_size) == ("cifar_resnet8", 10, (1, 8, 8))
    assert spec.training.input_size == (1, 8, 8)  # the teacher's, resolved at submission
    assert spec.student.init is not None and spec.student.init.read_bytes() == teacher.path.read_bytes()
    assert spec.dataset is not None and spec.dataset.builtin is None and spec.dataset.root is not None
    assert sorted(p.name for p in spec.dataset.root.iterdir()) == ["train", "val"]
    assert spec.dataset.memory_max_bytes == app_settings.inmemory_max_bytes


def test_a_teacher_gone_before_the_worker_reads_the_job_is_a_bad_teacher(api, app_settings, uploads):
    from core.db import session_scope
    from core.models import TeacherRow
    from kdcore.errors import BadTeacher

    teacher = upload_untrained_grey_teacher(api)
    job_id = api.post(
        "/v1/jobs", json={"method": "kd", "teachers": [teacher], "student": {"arch": "cifar_resnet8"}, "dataset": uploads["dataset"], "training": {"epochs": 1}}
    ).json()["id"]
    with session_scope() as session:  # as retention or an operator would remove it, past the API's in-use check
        session.delete(session.scalar(select(TeacherRow).where(TeacherRow.id == teacher)))
    with pytest.raises(BadTeacher, match=f"teacher {teacher} was deleted after the job was submitted"):
        _built(job_id, app_settings)


def test_a_student_init_that_no_longer_exists_is_a_bad_spec(api, app_settings, uploads):
    from core.db import session_scope
    from core.models import TeacherRow
    from kdcore.errors import BadSpec

    teacher = upload_untrained_grey_teacher(api)
    job_id = api.post(
        "/v1/jobs",
        json={"method": "supervised", "student": {"arch": "cifar_resnet8", "init": teacher}, "dataset": uploads["dataset"], "training": {"epochs": 1}},
    ).json()["id"]
    with session_scope() as session:
        session.delete(session.scalar(select(TeacherRow).where(TeacherRow.id == teacher)))
    with pytest.raises(BadSpec, match=f"student.init {teacher} no longer exists"):
        _built(job_id, app_settings)
