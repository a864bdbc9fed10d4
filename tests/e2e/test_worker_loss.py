"""A worker killed mid-job: the job resumes from its checkpoint on another worker and ends as if nothing happened."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load
from service import wait_for_job, wait_until
from teacher_uploads import upload_trained_teacher

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def fast_reaping_service(tmp_path):
    service = start_service(
        "postgres",
        tmp_path,
        workers=1,
        DISTILLERY_HEARTBEAT_TIMEOUT_S="4",
        DISTILLERY_HEARTBEAT_INTERVAL_S="1",
        DISTILLERY_REAPER_INTERVAL_S="1",
        DISTILLERY_REQUEUE_AFTER_S="5",
    )
    yield service
    stop_service(service)


def _student(client, job_id: str) -> dict[str, torch.Tensor]:
    items = {a["kind"]: a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
    return load(client.get(f"/v1/artifacts/{items['student_safetensors']['id']}").content)


def test_sigkilled_worker_job_resumes_from_checkpoint_with_identical_result(fast_reaping_service, trained_teacher):
    service = fast_reaping_service
    client = service.client()
    teacher = upload_trained_teacher(client, trained_teacher)
    body = {
        "method": "kd",
        "teachers": [teacher["id"]],
        "student": {"arch": "cifar_resnet20"},
        "dataset": "builtin:digits",
        "training": {"epochs": 3, "batch_size": 64, "seed": 7, "input_size": [3, 32, 32], "checkpoint_every_steps": 8},
        "export": ["safetensors"],
    }
    killed = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "killed"}).json()

    def past_first_checkpoint():
        job = client.get(f"/v1/jobs/{killed['id']}").json()
        return job if job["status"] == "running" and job["progress"].get("step", 0) >= 12 else None

    wait_until(past_first_checkpoint, 300, 0.1, "the job to pass its first checkpoint")
    service.kill_worker(service.workers[0])
    running = client.get(f"/v1/jobs/{killed['id']}").json()
    assert running["status"] == "running" and running["progress"]["fraction"] < 1.0

    service.start_worker()
    job = wait_for_job(client, killed["id"], timeout=600)
    assert job["status"] == "succeeded", (job["error"], service.logs())
    assert job["attempts"] == 2
    assert job["metrics"]["job/resumed_from_step"] >= 8

    control = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "control"}).json()
    control = wait_for_job(client, control["id"], timeout=600)
    assert control["status"] == "succeeded" and control["attempts"] == 1 and control["metrics"]["job/resumed_from_step"] == 0
    resumed, uninterrupted = _student(client, job["id"]), _student(client, control["id"])
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=0, atol=0, msg=name)
