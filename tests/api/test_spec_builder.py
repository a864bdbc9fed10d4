"""The worker reads back exactly the typed spec the API stored: defaults resolved once, at submission."""

from __future__ import annotations

from sqlalchemy import select


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
