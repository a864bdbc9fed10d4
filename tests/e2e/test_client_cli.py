"""The ``distillery`` client commands and the Python client against the real service, as a script would use them."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import httpx
import pytest
from datasets import digits_zip
from factories import save_teacher
from service import ROOT, wait_until
from webhook_receiver import Receiver, signature_ok

from client.client import DistilleryClient
from e2e.conftest import start_service, stop_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    # Keep-alive pings every 0.5 s, so every watched job sees some (a comment once broke the client's stream).
    svc = start_service("embedded", tmp_path_factory.mktemp("cli-svc"), DISTILLERY_SSE_PING_S="0.5", DISTILLERY_WEBHOOK_ALLOW_NETWORKS='["127.0.0.1/32"]')
    yield svc
    stop_service(svc)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, deployment):
    """A user's folder with a teacher, a dataset and a job spec, all uploaded once through the CLI."""
    folder = tmp_path_factory.mktemp("user")
    save_teacher(folder, "cifar_resnet8", 10, (3, 16, 16)).path.rename(folder / "teacher.safetensors")
    digits_zip(folder / "digits16.zip", size=16, per_class_limit=16)
    teacher = _ok(
        deployment,
        folder,
        "teachers",
        "upload",
        "teacher.safetensors",
        "--format",
        "safetensors",
        "--arch",
        "cifar_resnet8",
        "--num-classes",
        "10",
        "--input-size",
        "3,16,16",
        "--name",
        "random cnn",
    )
    dataset = _ok(deployment, folder, "datasets", "upload", "digits16.zip", "--name", "digits16")
    assert re.fullmatch(r"tch_\w+", teacher) and re.fullmatch(r"ds_\w+", dataset)
    (folder / "job.json").write_text(json.dumps(_spec(teacher, dataset, epochs=2)))
    (folder / "long.json").write_text(json.dumps(_spec(teacher, dataset, epochs=500)))
    return folder


def _spec(teacher: str, dataset: str, epochs: int) -> dict:
    return {
        "name": f"cli kd {epochs}",
        "method": "kd",
        "teachers": [teacher],
        "student": {"arch": "cifar_resnet8"},
        "dataset": dataset,
        "training": {"epochs": epochs, "batch_size": 32, "lr": 0.05, "augment": "none", "log_every_steps": 1},
        "export": ["safetensors"],
    }


def distillery(svc, cwd, *args: str, key: str | None = None, **popen) -> subprocess.CompletedProcess:
    env = {**svc.env, "DISTILLERY_URL": svc.url, "DISTILLERY_API_KEY": svc.key if key is None else key}
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300, **popen
    )


def _ok(svc, cwd, *args: str) -> str:
    done = distillery(svc, cwd, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr, svc.logs())
    return done.stdout.strip()


@pytest.fixture(scope="module")
def submitted(deployment, workdir) -> subprocess.CompletedProcess:
    """``distillery submit job.json --wait``, run once: a 2-epoch kd job followed to its end."""
    return distillery(deployment, workdir, "submit", "job.json", "--wait")


def test_a_script_uploads_submits_waits_and_downloads(deployment, workdir, submitted):
    done = submitted
    assert done.returncode == 0, (done.stderr, deployment.logs())
    job_id = done.stdout.strip()
    assert re.fullmatch(r"job_\w+", job_id), done.stdout
    assert "succeeded" in done.stderr and "val top-1" in done.stderr and "epoch 2/2" in done.stderr

    assert _ok(deployment, workdir, "status", job_id) == "succeeded"
    assert job_id in _ok(deployment, workdir, "list", "--status", "succeeded").splitlines()
    assert json.loads(_ok(deployment, workdir, "status", job_id, "--json"))["metrics"]["val/top1"] >= 0

    for command in ("events", "logs"):
        lines = _ok(deployment, workdir, command, job_id).splitlines()
        assert any(" status running" in line for line in lines) and any("metric train/loss=" in line for line in lines)
        assert lines[-1] == "end: the job succeeded"

    paths = _ok(deployment, workdir, "download", job_id, "--kind", "student_safetensors", "-o", "out").splitlines()
    assert len(paths) == 1 and paths[0].startswith("out/") and paths[0].endswith(".safetensors")
    with DistilleryClient(deployment.url, deployment.key) as client:
        artifact = next(a for a in client.artifacts(job_id) if a.kind == "student_safetensors")
        assert hashlib.sha256((workdir / paths[0]).read_bytes()).hexdigest() == artifact.sha256
        streamed = [e for e in client.events(job_id) if e.type != "end"]
        paged, after = [], 0
        while True:
            page = client.event_page(job_id, after=after, limit=7)
            paged += page.items
            if page.next_cursor is None:
                break
            after = int(page.next_cursor)
        assert [e.seq for e in paged] == [e.seq for e in streamed] and len(paged) > 7
        assert [e.model_dump(exclude_none=True) for e in paged] == [e.model_dump(exclude_none=True) for e in streamed]


def test_event_list_refuses_bad_paging_with_a_problem(deployment, submitted):
    job_id = submitted.stdout.strip()
    with DistilleryClient(deployment.url, deployment.key) as client:
        for params in ({"limit": 501}, {"cursor": "abc"}, {"after": -1}):
            response = client.http.get(f"/v1/jobs/{job_id}/events/list", params=params)
            assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json"), response.text
        assert client.http.get("/v1/jobs/job_missing/events/list").status_code == 404


def test_local_storage_has_no_presigned_urls_and_webhooks_need_a_secret(deployment, submitted):
    with DistilleryClient(deployment.url, deployment.key) as client:
        artifact = client.artifacts(submitted.stdout.strip())[0]
        link = client.http.get(f"/v1/artifacts/{artifact.id}/url")
        assert link.status_code == 409 and f"GET /v1/artifacts/{artifact.id}" in link.json()["detail"]
    with DistilleryClient(deployment.url, deployment.cli("keys", "create", "--tenant", "no-secret")) as client:
        refused = client.http.post(
            "/v1/jobs", json={"method": "kd", "student": {"arch": "cifar_resnet8"}, "training": {"epochs": 1}, "webhook_url": "http://127.0.0.1:9/"}
        )
        assert refused.status_code == 422 and "DISTILLERY_WEBHOOK_SECRET" in refused.json()["detail"]


def test_cancel_ends_a_watched_job_with_a_failing_exit_code_and_a_signed_webhook(deployment, workdir):
    receiver = Receiver({})
    with DistilleryClient(deployment.url, deployment.key) as client:
        secret = client.http.post("/v1/webhooks/secret").json()["secret"]
        spec = json.loads((workdir / "long.json").read_text())
        job_id = client.submit_job({**spec, "webhook_url": receiver.url + "/hook"}).id
        watcher = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "events", job_id],
            cwd=workdir,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**deployment.env, "DISTILLERY_URL": deployment.url, "DISTILLERY_API_KEY": deployment.key, "PYTHONPATH": str(ROOT)},
        )
        try:
            metrics = wait_until(lambda: _running_metrics(deployment, job_id), 120, 0.5, what="heartbeat and samples/s gauges for the running job")
            assert metrics["heartbeat_age"] < 30 and metrics["samples_per_second"] > 0
            active = distillery(deployment, workdir, "delete", job_id)
            assert active.returncode == 1 and "cancel" in active.stderr, active.stderr
            assert _ok(deployment, workdir, "cancel", job_id) == job_id
            stdout, _ = watcher.communicate(timeout=120)
        finally:
            watcher.kill()
        assert watcher.returncode == 1 and stdout.splitlines()[-1] == "end: the job cancelled"
        assert _ok(deployment, workdir, "status", job_id) == "cancelled"
        [delivery] = wait_until(lambda: [d for d in client.webhooks(job_id) if d.status == "delivered"], 60, 0.3, what="the job.cancelled webhook")
    receiver.server.shutdown()
    [request] = receiver.received("/hook")
    assert delivery.event == "job.cancelled" and json.loads(request["body"])["data"]["job"]["status"] == "cancelled"
    assert signature_ok(secret, request["headers"], request["body"])
    distillery(deployment, workdir, "delete", job_id).check_returncode()
    gone = distillery(deployment, workdir, "status", job_id)
    assert gone.returncode == 1 and f"no job with id '{job_id}'" in gone.stderr


def _running_metrics(svc, job_id: str) -> dict | None:
    text = httpx.get(svc.url + "/metrics").text
    age = re.search(rf'distillery_worker_heartbeat_age_seconds{{job_id="{job_id}",worker="[^"]+"}} (\S+)', text)
    rate = re.search(rf'distillery_training_samples_per_second{{job_id="{job_id}"}} (\S+)', text)
    return {"heartbeat_age": float(age.group(1)), "samples_per_second": float(rate.group(1))} if age and rate else None


def test_refusals_reach_the_user_as_sentences_and_exit_codes(deployment, workdir):
    missing = distillery(deployment, workdir, "status", "job_doesnotexist")
    assert missing.returncode == 1 and "no job with id 'job_doesnotexist'" in missing.stderr and missing.stdout == ""
    no_key = distillery(deployment, workdir, "list", key="")
    assert no_key.returncode == 1 and "DISTILLERY_API_KEY" in no_key.stderr
    (workdir / "broken.json").write_text("{not json")
    broken = distillery(deployment, workdir, "submit", "broken.json")
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    bad_spec = distillery(
        deployment, workdir, "submit", "-", input=json.dumps({"method": "kd", "student": {"arch": "cifar_resnet8"}, "training": {"epochs": 1}})
    )
    assert bad_spec.returncode == 1 and "the job names 0" in bad_spec.stderr
    unreachable = subprocess.run(
        [sys.executable, "-m", "client.cli", "list"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**deployment.env, "DISTILLERY_URL": "http://127.0.0.1:9", "DISTILLERY_API_KEY": "x", "PYTHONPATH": str(ROOT)},
    )
    assert unreachable.returncode == 1 and "cannot reach Distillery" in unreachable.stderr
