"""Deletion and retention on real processes: what a finished job keeps, what DELETE removes, and the quota it frees.

One embedded deployment (API + worker) keeping two checkpoints per ended job
(``DISTILLERY_KEEP_CHECKPOINTS=2``) and a small storage quota, so a tenant fills it quickly.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save
from service import Service, wait_for_job, wait_until

from e2e.conftest import start_service, stop_service
from e2e.test_faults import tiny_job
from kdcore.models import create_model

pytestmark = [pytest.mark.e2e]
QUOTA = 2_000_000


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    service = start_service("embedded", tmp_path_factory.mktemp("deletion"), DISTILLERY_KEEP_CHECKPOINTS="2", DISTILLERY_TENANT_MAX_STORAGE_BYTES=str(QUOTA))
    yield service
    stop_service(service)


def _data(service: Service) -> Path:
    return Path(service.env["DISTILLERY_DATA_DIR"]).resolve()


def _stored(service: Service, job_id: str) -> list[Path]:
    """Every object under the job's storage prefix (artifacts and checkpoints)."""
    return sorted(p for p in (_data(service) / "objects" / "tenants").glob(f"*/jobs/{job_id}/**/*") if p.is_file())


def _finished(client, epochs: int) -> dict:
    job = wait_for_job(client, client.post("/v1/jobs", json=tiny_job(epochs=epochs)).json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    return job


def _upload_teacher(client, seed: int):
    torch.manual_seed(seed)
    weights = save({k: v.contiguous() for k, v in create_model("cifar_resnet8", num_classes=10, in_chans=1).state_dict().items()})
    return client.post(
        "/v1/teachers",
        files={"file": (f"t{seed}.safetensors", io.BytesIO(weights))},
        data={"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "1,8,8"},
    )


def _storage_used(client) -> int:
    """The bytes the quota counts for the client's tenant, as its refusal names them: an upload larger than the whole quota is always refused."""
    refused = client.post(
        "/v1/teachers",
        files={"file": ("probe.safetensors", io.BytesIO(bytes(QUOTA + 1)))},
        data={"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "1,8,8"},
    )
    assert refused.status_code == 429, refused.text
    used = re.search(r"this tenant stores (\d+) bytes", refused.json()["detail"])
    assert used is not None, refused.text
    return int(used.group(1))


def test_an_ended_job_keeps_its_newest_checkpoints_only(deployment: Service):
    with deployment.client() as client:
        job = _finished(client, epochs=3)
        kept = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]
        assert [c["epoch"] for c in kept] == [2, 3] and kept[-1]["step"] == job["progress"]["steps"], kept
        files = [p.name for p in _stored(deployment, job["id"]) if p.parent.name == "checkpoints"]
        assert len(files) == 2, files
        assert not (_data(deployment) / "work" / job["id"]).exists()


def test_cancel_of_an_ended_job_is_refused_naming_its_status(deployment: Service):
    with deployment.client() as client:
        job = _finished(client, epochs=1)
        refused = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert refused.status_code == 409 and "already ended (succeeded)" in refused.json()["detail"], refused.text


def test_delete_refuses_a_running_job_then_removes_everything(deployment: Service):
    with deployment.client() as client:
        job_id = client.post("/v1/jobs", json=tiny_job(epochs=60)).json()["id"]
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"], 180, what="the job to store a checkpoint")
        refused = client.delete(f"/v1/jobs/{job_id}")
        assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"], refused.text
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        assert wait_for_job(client, job_id, timeout=120)["status"] == "cancelled"
        wait_until(lambda: not (_data(deployment) / "work" / job_id).exists(), 30, what="the worker to tidy the work folder")
        assert _stored(deployment, job_id), "the cancelled job stored no checkpoint to delete"
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/artifacts", f"/v1/jobs/{job_id}/checkpoints", f"/v1/jobs/{job_id}/events/list"):
            assert client.get(path).status_code == 404, path
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert _stored(deployment, job_id) == []
    assert not list((_data(deployment) / "objects" / "tenants").glob(f"*/jobs/{job_id}"))


def test_deleting_a_paused_job_removes_its_work_folder_checkpoints_and_teacher_outputs(deployment: Service):
    """A paused job is settled but untidied: its worker let go and left the work folder (checkpoints, the teacher-output store) for the resume."""
    with deployment.client(deployment.cli("keys", "create", "--tenant", "pauser")) as client:
        teacher = _upload_teacher(client, seed=7)
        assert teacher.status_code == 201, teacher.text
        kd = {**tiny_job(epochs=60, checkpoint_every_steps=4), "method": "kd", "teachers": [teacher.json()["id"]]}
        job_id = client.post("/v1/jobs", json=kd).json()["id"]
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"], 180, what="the job to store a checkpoint")
        assert client.post(f"/v1/jobs/{job_id}/pause").status_code == 202
        job = wait_for_job(client, job_id, timeout=120, statuses=("paused", "succeeded", "failed", "cancelled"))
        assert job["status"] == "paused", job

        work = _data(deployment) / "work" / job_id
        for folder in ("checkpoints", "teacher-outputs"):
            assert any(p.is_file() for p in (work / folder).rglob("*")), (folder, sorted(work.rglob("*")))
        assert _stored(deployment, job_id), "the paused job stored no checkpoint to delete"
        checkpoint_bytes = sum(c["size_bytes"] for c in client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"])
        assert _storage_used(client) == teacher.json()["size_bytes"] + checkpoint_bytes > teacher.json()["size_bytes"]

        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert _storage_used(client) == teacher.json()["size_bytes"]
    assert not work.exists()
    assert _stored(deployment, job_id) == []
    assert not list((_data(deployment) / "objects" / "tenants").glob(f"*/jobs/{job_id}"))


def test_deleting_a_job_frees_the_tenants_quota(deployment: Service):
    """Teachers fill what the job's artifacts and checkpoints leave of the quota; once it is deleted, more fit."""
    with deployment.client(deployment.cli("keys", "create", "--tenant", "frugal")) as client:
        job = _finished(client, epochs=2)
        held = sum(a["size_bytes"] for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"])
        held += sum(c["size_bytes"] for c in client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"])

        sizes: list[int] = []

        def fill(start: int) -> int:
            """Upload teachers until the quota refuses one; returns how many fitted."""
            for seed in range(start, start + 20):
                response = _upload_teacher(client, seed)
                if response.status_code == 429:
                    assert "quota" in response.json()["detail"], response.text
                    return seed - start
                assert response.status_code == 201, response.text
                sizes.append(response.json()["size_bytes"])
            raise AssertionError("the quota never filled up")

        fill(0)
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
        freed = fill(100)
    assert freed >= max(1, held // max(sizes)), (freed, held, sizes)
