"""Webhooks end to end: a real HTTP receiver on loopback gets signed job.succeeded|failed|cancelled deliveries
from the worker, retried with backoff, and every delivery is recorded on its job."""

from __future__ import annotations

import json

import pytest
from datasets import digits_zip
from factories import save_teacher
from service import free_port, wait_for_job, wait_until
from webhook_receiver import Receiver, signature_ok

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
GLOBAL_SECRET = "global-test-secret"
LOOPBACK_RECEIVER = '["127.0.0.1/32"]'  # webhooks reach only public addresses unless the operator allows a range


def _upload(client, tmp_path) -> tuple[str, str]:
    teacher_file = save_teacher(tmp_path, "cifar_resnet8", 10, (3, 16, 16)).path
    with open(teacher_file, "rb") as handle:
        teacher = client.post(
            "/v1/teachers",
            files={"file": ("t.safetensors", handle)},
            data={"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "3,16,16"},
        ).json()["id"]
    archive = tmp_path / "digits16.zip"
    if not archive.exists():
        digits_zip(archive, size=16, per_class_limit=16)
    with open(archive, "rb") as handle:
        dataset = client.post("/v1/datasets", files={"file": ("d.zip", handle)}).json()["id"]
    return teacher, dataset


def _job(client, teacher: str, dataset: str, webhook_url: str, **training) -> str:
    body = {
        "method": "kd",
        "teachers": [teacher],
        "student": {"arch": "cifar_resnet8"},
        "dataset": dataset,
        "webhook_url": webhook_url,
        "training": {"epochs": 1, "batch_size": 32, "augment": "none", **training},
        "export": ["safetensors"],
    }
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _settled(client, job_id: str) -> list[dict] | None:
    items = client.get(f"/v1/jobs/{job_id}/webhooks").json()["items"]
    return items if items and all(d["status"] != "pending" for d in items) else None


def test_signed_deliveries_with_retries_for_every_ending(tmp_path):
    receiver = Receiver({"/flaky": [500]})
    svc = start_service(
        "postgres",
        tmp_path,
        workers=0,
        DISTILLERY_WEBHOOK_SECRET=GLOBAL_SECRET,
        DISTILLERY_WEBHOOK_ALLOW_NETWORKS=LOOPBACK_RECEIVER,
        DISTILLERY_WEBHOOK_BACKOFF_S="0.3",
        DISTILLERY_WEBHOOK_MAX_ATTEMPTS="3",
        DISTILLERY_LOG_FORMAT="json",
    )
    try:
        acme, beta = svc.client(), svc.client(svc.cli("keys", "create", "--tenant", "beta"))
        beta_secret = beta.post("/v1/webhooks/secret").json()["secret"]
        assert beta_secret.startswith("whsec_")
        teacher, dataset = _upload(acme, tmp_path)
        beta_teacher, beta_dataset = _upload(beta, tmp_path)

        cancelled = _job(acme, teacher, dataset, f"http://127.0.0.1:{free_port()}/nobody-listens", epochs=50)
        assert acme.post(f"/v1/jobs/{cancelled}/cancel").json()["status"] == "cancelled"
        succeeded = _job(acme, teacher, dataset, receiver.url + "/flaky")
        failed = _job(beta, beta_teacher, beta_dataset, receiver.url + "/beta", epochs=8, lr=10.0, weight_decay=1.0)  # diverges near step 20 of 32: nan_loss
        svc.start_worker()

        for client, job_id, status in ((acme, succeeded, "succeeded"), (beta, failed, "failed")):
            assert wait_for_job(client, job_id, timeout=300)["status"] == status, svc.logs()
        deliveries = {
            job_id: wait_until(lambda j=job_id, c=client: _settled(c, j), 60, 0.3, what=f"webhooks of {job_id}")
            for client, job_id in ((acme, cancelled), (acme, succeeded), (beta, failed))
        }
        assert acme.get(f"/v1/jobs/{failed}/webhooks").status_code == 404
    finally:
        stop_service(svc)
        receiver.server.shutdown()

    [on_cancel] = deliveries[cancelled]
    assert (on_cancel["event"], on_cancel["status"], on_cancel["attempts"]) == ("job.cancelled", "failed", 3)
    assert "ConnectError" in on_cancel["last_error"] and on_cancel["delivered_at"] is None

    [on_success] = deliveries[succeeded]
    assert (on_success["event"], on_success["status"], on_success["attempts"], on_success["last_status_code"]) == ("job.succeeded", "delivered", 2, 200)
    first, second = receiver.received("/flaky")
    assert first["body"] == second["body"], "a retry must resend the same bytes"
    assert signature_ok(GLOBAL_SECRET, second["headers"], second["body"])
    payload = json.loads(second["body"])
    assert payload["type"] == "job.succeeded" and payload["id"] == on_success["id"] == second["headers"]["Distillery-Delivery"]
    assert payload["data"]["job"]["id"] == succeeded and payload["data"]["job"]["status"] == "succeeded"
    assert {a["kind"] for a in payload["data"]["artifacts"]} >= {"student_safetensors"}

    [on_failure] = deliveries[failed]
    assert (on_failure["event"], on_failure["status"], on_failure["attempts"]) == ("job.failed", "delivered", 1)
    [request] = receiver.received("/beta")
    assert signature_ok(beta_secret, request["headers"], request["body"]) and not signature_ok(GLOBAL_SECRET, request["headers"], request["body"])
    payload = json.loads(request["body"])
    assert payload["type"] == "job.failed" and payload["data"]["job"]["error"]["code"] == "nan_loss"

    worker_lines = [json.loads(line) for line in (tmp_path / "logs" / "worker0.log").read_text().splitlines() if line.startswith("{")]
    assert any(entry.get("job_id") == succeeded and entry["logger"] == "distillery.worker.webhooks" for entry in worker_lines)
    api_lines = [json.loads(line) for line in (tmp_path / "logs" / "api.log").read_text().splitlines() if line.startswith("{")]
    assert any(entry.get("job_id") == cancelled and entry.get("route") == "/v1/jobs/{job_id}/cancel" for entry in api_lines)
