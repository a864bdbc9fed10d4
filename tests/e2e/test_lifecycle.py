"""Pause, resume, retry, checkpoints and phases on real processes: the API, a worker, and the ``distillery`` commands.

Every interrupted job ends with the same weights, bit for bit, as the uninterrupted control run.
One deployment for the module (embedded backend, one worker at a time) whose reaper is quick and
whose jobs get one attempt, so a killed worker leaves a failed job to retry.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load, load_file
from service import ROOT, wait_for_job, wait_until

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BODY = {
    "method": "supervised",
    "student": {"arch": "cifar_resnet8"},
    "dataset": "builtin:digits",
    # 32 px so that a job lasts seconds: the CLI's pause and the worker kill must land while it runs
    "training": {"epochs": 2, "batch_size": 128, "seed": 11, "input_size": [3, 32, 32], "checkpoint_every_steps": 4, "log_every_steps": 2},
    "export": ["safetensors", "torchscript"],
}
BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    svc = start_service(
        "embedded",
        tmp_path_factory.mktemp("lifecycle-svc"),
        DISTILLERY_MAX_ATTEMPTS="1",
        DISTILLERY_KEEP_CHECKPOINTS="10",  # every epoch's checkpoint stays listed once a job has ended (the default keeps the newest)
        DISTILLERY_HEARTBEAT_TIMEOUT_S="4",
        DISTILLERY_HEARTBEAT_INTERVAL_S="1",
        DISTILLERY_REAPER_INTERVAL_S="1",
        DISTILLERY_REQUEUE_AFTER_S="5",
    )
    yield svc
    stop_service(svc)


@pytest.fixture(scope="module")
def client(deployment):
    with deployment.client() as http:
        yield http


def cli(deployment, *args: str) -> subprocess.CompletedProcess:
    env = {**deployment.env, "DISTILLERY_URL": deployment.url, "DISTILLERY_API_KEY": deployment.key}
    return subprocess.run([sys.executable, "-m", "client.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def submit(client, key: str, body: dict | None = None) -> str:
    created = client.post("/v1/jobs", json=body or BODY, headers={"Idempotency-Key": key})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def running(client, job_id: str, at_step: int = 0) -> dict:
    def check():
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] in ("queued", "running"), job
        return job if job["status"] == "running" and job["progress"].get("step", 0) >= at_step else None

    return wait_until(check, 300, 0.1, f"{job_id} to run past step {at_step}")


def student(client, job_id: str) -> dict[str, torch.Tensor]:
    items = {a["kind"]: a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
    return load(client.get(f"/v1/artifacts/{items['student_safetensors']['id']}").content)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def control(deployment, client) -> dict:
    """The uninterrupted run; it also exports ONNX, as README's examples/job.json does, so its export's warnings are checked too."""
    job = wait_for_job(client, submit(client, "control", {**BODY, "export": [*BODY["export"], "onnx"]}), timeout=900)
    assert job["status"] == "succeeded", (job["error"], deployment.logs())
    return job


def test_a_finished_job_shows_its_phases_checkpoints_and_one_based_epochs(deployment, client, control):
    assert control["phase"] is None and control["attempts"] == 1
    names = [p["name"] for p in control["phases"]]
    assert names == ["validating", "training", "exporting", "evaluating", "publishing"], names
    assert all(p["finished_at"] >= p["started_at"] for p in control["phases"])

    checkpoints = client.get(f"/v1/jobs/{control['id']}/checkpoints").json()["items"]
    steps_per_epoch = control["progress"]["steps"] // 2
    assert [(c["step"], c["epoch"]) for c in checkpoints] == [(steps_per_epoch, 1), (2 * steps_per_epoch, 2)]  # mid-epoch ones were superseded
    assert all(re.fullmatch(r"ckpt_\w+", c["id"]) and c["size_bytes"] > 0 and 0 <= c["metrics"]["val/top1"] <= 1 for c in checkpoints)
    val = [p for p in client.get(f"/v1/jobs/{control['id']}/metrics", params={"name": "val/top1"}).json()["series"]]
    assert [(p["epoch"], p["value"]) for p in val] == [(c["epoch"], c["metrics"]["val/top1"]) for c in checkpoints]
    with client.stream("GET", f"/v1/jobs/{control['id']}/events") as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert [e["name"] for e in events if e.get("type") == "phase"] == names
    assert {e["epoch"] for e in events if e.get("type") == "metric" and e["step"] <= steps_per_epoch} == {1}

    newest = client.get(f"/v1/checkpoints/{checkpoints[-1]['id']}/student")
    assert newest.status_code == 200, newest.text
    assert_same_weights(load(newest.content), student(client, control["id"]))
    path = deployment.log_dir / "newest.safetensors"
    path.write_bytes(newest.content)
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    assert (meta["arch"], meta["num_classes"], json.loads(meta["input_size"]), meta["checkpoint_step"]) == (
        "cifar_resnet8",
        "10",
        [3, 32, 32],
        str(2 * steps_per_epoch),
    )

    shown = cli(deployment, "status", control["id"])
    assert shown.returncode == 0 and shown.stdout.strip() == "succeeded", shown.stderr
    assert all(name in shown.stderr for name in names), shown.stderr
    listed = cli(deployment, "checkpoints", control["id"])
    assert listed.returncode == 0 and listed.stdout.split() == [c["id"] for c in checkpoints], listed.stderr

    # the first epoch's student, not the job's final one, through `distillery checkpoints JOB --student CKPT -o DIR`
    first = checkpoints[0]["id"]
    downloaded = cli(deployment, "checkpoints", control["id"], "--student", first, "-o", str(deployment.log_dir / "downloads"))
    assert downloaded.returncode == 0, downloaded.stderr
    assert downloaded.stdout.strip() == str(deployment.log_dir / "downloads" / f"student-{first}.safetensors"), downloaded.stdout
    first_student = load_file(downloaded.stdout.strip())
    assert_same_weights(first_student, load(client.get(f"/v1/checkpoints/{first}/student").content))
    assert any(not torch.equal(first_student[name], tensor) for name, tensor in student(client, control["id"]).items())


def test_a_paused_job_frees_its_worker_and_resumes_to_the_same_weights(deployment, client, control):
    job_id = submit(client, "paused")
    running(client, job_id)
    paused = cli(deployment, "pause", job_id)
    assert paused.returncode == 0 and paused.stdout.strip() == job_id, paused.stderr
    job = wait_for_job(client, job_id, timeout=300, statuses=("paused", "succeeded", "failed", "cancelled"))
    assert job["status"] == "paused" and job["phase"] is None, (job, deployment.logs())
    status_events = [e for e in client.get(f"/v1/jobs/{job_id}/events/list", params={"limit": 500}).json()["items"] if e["type"] == "status"]
    assert [e["status"] for e in status_events] == ["queued", "running", "pausing", "paused"]
    pause_point = status_events[-1]["detail"]
    checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    assert checkpoints[-1]["id"] == pause_point["checkpoint"] and checkpoints[-1]["step"] == pause_point["step"] > 0
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:  # the stream of a paused job ends
        assert [line for line in stream.iter_lines() if line.startswith('data: {"status"')] == ['data: {"status": "paused"}']
    assert client.post(f"/v1/jobs/{job_id}/pause").status_code == 409

    other = wait_for_job(client, submit(client, "while-paused", {**BODY, "training": {**BODY["training"], "epochs": 1}}), timeout=600)
    assert other["status"] == "succeeded"  # the paused job holds no worker

    resumed = cli(deployment, "resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    job = wait_for_job(client, job_id, timeout=600)
    assert job["status"] == "succeeded", (job["error"], deployment.logs())
    assert job["attempts"] == 2 and job["metrics"]["job/resumed_from_step"] == pause_point["step"]
    assert [p["name"] for p in job["phases"]].count("training") == 2
    assert_same_weights(student(client, job_id), student(client, control["id"]))


def test_a_new_job_starts_from_a_checkpoint(client, control):
    first = client.get(f"/v1/jobs/{control['id']}/checkpoints").json()["items"][0]
    refused = client.post("/v1/jobs", json={**BODY, "student": {"arch": "cifar_resnet20", "init": first["id"]}})
    assert refused.status_code == 422 and "cifar_resnet8" in refused.json()["detail"]
    nudged = {**BODY, "student": {"arch": "cifar_resnet8", "init": first["id"]}, "training": {**BODY["training"], "epochs": 1, "lr": 1e-6}}
    job = wait_for_job(client, submit(client, "from-checkpoint", nudged), timeout=600)
    assert job["status"] == "succeeded", job["error"]
    start = load(client.get(f"/v1/checkpoints/{first['id']}/student").content)
    after, trained_on = student(client, job["id"]), student(client, control["id"])
    learned = [name for name in start if not name.endswith(BN_STATISTICS)]
    for name in learned:  # a learning rate of 1e-6 leaves the starting weights where they were
        torch.testing.assert_close(after[name], start[name], rtol=0, atol=1e-3, msg=name)
    assert any((trained_on[name] - start[name]).abs().max() > 1e-2 for name in learned)  # one more epoch at the real rate moves them
    assert any(not torch.equal(after[name], start[name]) for name in start if name.endswith("running_mean"))  # the job did take its steps


def test_a_failed_job_retries_from_its_newest_checkpoint_to_the_same_weights(deployment, client, control):
    job_id = submit(client, "doomed")
    running(client, job_id, at_step=6)
    deployment.kill_worker(deployment.workers[0])
    deployment.start_worker()
    job = wait_for_job(client, job_id, timeout=300)
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost", job
    newest = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"][-1]
    assert newest["step"] >= 4

    retried = cli(deployment, "retry", job_id)
    assert retried.returncode == 0 and retried.stdout.strip() == job_id, retried.stderr
    assert "status queued" in retried.stderr, retried.stderr
    job = wait_for_job(client, job_id, timeout=600)
    assert job["status"] == "succeeded", (job["error"], deployment.logs())
    assert job["attempts"] == 2 and job["metrics"]["job/resumed_from_step"] >= newest["step"]
    assert_same_weights(student(client, job_id), student(client, control["id"]))
    again = cli(deployment, "retry", job_id)  # only a failed job retries; the CLI says why and exits 1
    assert again.returncode == 1 and again.stdout == "", again
    assert f"job {job_id} is succeeded; retry applies only to a failed job" in again.stderr, again.stderr


def test_a_cancelled_job_is_not_logged_as_a_succeeded_task_and_jobs_log_no_tracer_warnings(deployment, client, control):
    job_id = submit(client, "cancelled")
    running(client, job_id)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert wait_for_job(client, job_id, timeout=300)["status"] == "cancelled"
    worker_log = "\n".join(p.read_text(errors="replace") for p in deployment.log_dir.glob("worker*.log"))
    task_lines = [line for line in worker_log.splitlines() if "worker.run_job[" in line and job_id in line]
    assert any(line.endswith(f"ignored [{job_id}]") for line in task_lines), task_lines
    assert not any("succeeded in" in line for line in task_lines), task_lines
    assert any("succeeded in" in line for line in worker_log.splitlines() if control["id"] in line)
    exported = {a["kind"] for a in client.get(f"/v1/jobs/{control['id']}/artifacts").json()["items"]}
    assert {"student_torchscript", "student_onnx"} <= exported, exported  # both exporters ran in the log checked here
    assert "TracerWarning" not in worker_log and "FutureWarning" not in worker_log
