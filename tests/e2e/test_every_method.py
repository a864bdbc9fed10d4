"""Every registered method runs to ``succeeded`` through the REST API with ``hyperparams: {}``."""

from __future__ import annotations

import pytest
from datasets import digits_zip
from service import wait_for_job
from teacher_uploads import upload_trained_teacher

from kdcore.methods import list_methods

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
METHODS = [m for m in list_methods()]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from e2e.conftest import running_service

    with running_service("embedded", tmp_path_factory.mktemp("every-method")) as service:
        yield service


@pytest.fixture(scope="module")
def uploads(embedded, trained_teacher, tmp_path_factory):
    client = embedded.client()
    teacher = upload_trained_teacher(client, trained_teacher)
    archive = digits_zip(tmp_path_factory.mktemp("small") / "small.zip", size=16, per_class_limit=16)
    with open(archive, "rb") as handle:
        dataset = client.post("/v1/datasets", files={"file": ("small.zip", handle)}).json()
    return {"teacher": teacher["id"], "dataset": dataset["id"]}


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_method_succeeds_with_paper_defaults(method, embedded, uploads):
    client = embedded.client()
    low, _ = method.teacher_count
    teachers = [uploads["teacher"]] * (2 if method.name == "meal_v2" else low)
    training = {"epochs": 1, "batch_size": 32, "input_size": [3, 16, 16]}
    if not method.needs_dataset:
        training["steps_per_epoch"] = 2
    body = {
        "method": method.name,
        "teachers": teachers,
        "student": {"arch": "cifar_resnet8"},
        "hyperparams": {},
        "dataset": uploads["dataset"] if method.needs_dataset else None,
        "training": training,
        "export": ["safetensors"],
    }
    created = client.post("/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["hyperparams"] == method.Hyperparams().model_dump(mode="json")
    job = wait_for_job(client, created.json()["id"], timeout=600)
    assert job["status"] == "succeeded", (job["error"], embedded.logs()[-3000:])
    assert job["metrics"]["student/params"] > 0
    names = {p["name"] for p in client.get(f"/v1/jobs/{job['id']}/metrics").json()["series"]}
    assert "train/loss" in names and any(n.startswith("train/loss/") for n in names)
    kinds = {a["kind"] for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]}
    assert kinds == {"student_safetensors", "report"}
