"""Pause, resume, retry and cancel through the real app: each request either moves the job or answers 409 naming its status."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from core.db import session_scope
from core.ids import new_id
from core.models import CheckpointRow, JobRow

DIGITS_JOB = {"method": "supervised", "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 1}}


def _submit(api) -> str:
    created = api.post("/v1/jobs", json=DIGITS_JOB)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _set(job_id: str, **values) -> None:
    with session_scope() as session:
        session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))


def _conflict(response, status: str, action: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert f"is {status}" in detail and action in detail, detail


def test_a_queued_job_pauses_at_once_and_resumes_to_the_queue(api):
    job_id = _submit(api)
    paused = api.post(f"/v1/jobs/{job_id}/pause")
    assert paused.status_code == 202 and paused.json()["status"] == "paused" and paused.json()["phase"] is None
    _conflict(api.post(f"/v1/jobs/{job_id}/pause"), "paused", "pause")
    _conflict(api.post(f"/v1/jobs/{job_id}/retry"), "paused", "retry")
    assert job_id in [j["id"] for j in api.get("/v1/jobs?status=paused").json()["items"]]
    resumed = api.post(f"/v1/jobs/{job_id}/resume")
    assert resumed.status_code == 202 and resumed.json()["status"] == "queued"
    _conflict(api.post(f"/v1/jobs/{job_id}/resume"), "queued", "resume")
    statuses = [(e["status"], (e["detail"] or {}).get("reason")) for e in api.get(f"/v1/jobs/{job_id}/events/list").json()["items"]]
    assert statuses == [("queued", None), ("paused", "paused before a worker took it"), ("queued", "resumed")]


def test_a_running_job_turns_pausing_and_a_pausing_or_paused_job_can_be_cancelled(api):
    job_id = _submit(api)
    _set(job_id, status="running", worker="w1", phase="training")
    pausing = api.post(f"/v1/jobs/{job_id}/pause").json()
    assert (pausing["status"], pausing["phase"]) == ("pausing", "training")
    cancelling = api.post(f"/v1/jobs/{job_id}/cancel").json()
    assert (cancelling["status"], cancelling["cancel_requested"]) == ("pausing", True)
    _set(job_id, status="paused", worker=None, phase=None)
    assert api.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    _conflict(api.post(f"/v1/jobs/{job_id}/pause"), "cancelled", "pause")


def test_a_job_being_cancelled_cannot_be_paused(api):
    job_id = _submit(api)
    _set(job_id, status="running", worker="w1", cancel_requested=True)
    _conflict(api.post(f"/v1/jobs/{job_id}/pause"), "running", "not being cancelled")


def test_retry_requeues_only_a_failed_job_as_a_new_attempt(api):
    job_id = _submit(api)
    _conflict(api.post(f"/v1/jobs/{job_id}/retry"), "queued", "failed")
    _set(job_id, status="failed", attempts=3, max_attempts=3, error_code="worker_lost", error_message="lost", worker="w1")
    retried = api.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 202, retried.text
    job = retried.json()
    assert (job["status"], job["error"], job["finished_at"], job["attempts"]) == ("queued", None, None, 3)
    with session_scope() as session:
        assert session.get(JobRow, job_id).max_attempts == 6


@pytest.mark.parametrize("action", ["pause", "resume", "retry"])
def test_another_tenants_job_is_not_found(api, other_tenant, action):
    job_id = _submit(api)
    assert api.post(f"/v1/jobs/{job_id}/{action}", headers=other_tenant).status_code == 404


def test_checkpoints_are_listed_and_found_only_within_the_tenant(api, other_tenant):
    job_id = _submit(api)
    public_id = new_id("ckpt")
    with session_scope() as session:
        session.add(
            CheckpointRow(
                public_id=public_id,
                job_id=job_id,
                global_step=12,
                epoch=1,
                epoch_end=True,
                metrics={"val/top1": 0.5},
                size_bytes=1234,
                storage_key="tenants/x/gone.pt",
                sha256="0" * 64,
            )
        )
    items = api.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    assert [(c["id"], c["step"], c["epoch"], c["metrics"], c["size_bytes"]) for c in items] == [(public_id, 12, 1, {"val/top1": 0.5}, 1234)]
    assert api.get(f"/v1/jobs/{job_id}/checkpoints", headers=other_tenant).status_code == 404
    assert api.get(f"/v1/checkpoints/{public_id}/student", headers=other_tenant).status_code == 404
    missing = api.get(f"/v1/checkpoints/{public_id}/student")
    assert missing.status_code == 404 and "no longer stored" in missing.json()["detail"]

    other_arch = api.post("/v1/jobs", json={**DIGITS_JOB, "student": {"arch": "cifar_resnet20", "init": public_id}})
    assert other_arch.status_code == 422 and "holds a cifar_resnet8 student" in other_arch.json()["detail"]
    unknown = api.post("/v1/jobs", json={**DIGITS_JOB, "student": {"arch": "cifar_resnet8", "init": "ckpt_0000"}})
    assert unknown.status_code == 422 and "not a checkpoint of this tenant" in unknown.json()["detail"]
    foreign = api.post("/v1/jobs", json={**DIGITS_JOB, "student": {"arch": "cifar_resnet8", "init": public_id}}, headers=other_tenant)
    assert foreign.status_code == 422
    assert api.post("/v1/jobs", json={**DIGITS_JOB, "student": {"arch": "cifar_resnet8", "init": public_id}}).status_code == 201
