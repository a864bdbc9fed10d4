"""MLflow registry hand-off end to end: a real ``mlflow server`` on loopback (SQLite store, proxied artifacts),
the real service with MLFLOW_TRACKING_URI pointing at it, and a tiny kd job that asks for ``registry``.
Everything is checked through MLflow's own REST API; the student also loads with ``mlflow.pyfunc``."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from datasets import digits_zip
from service import free_port, wait_for_job, wait_until
from teacher_uploads import upload_trained_teacher

from client.client import DistilleryClient
from e2e.conftest import start_service, stop_service
from worker.mlflow_handoff import mlflow_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
if importlib.util.find_spec("mlflow") is None or not MLFLOW_BIN.exists():
    pytest.skip(
        "the mlflow package is not installed here (make install puts it in .venv: pip install -e '.[dev]'), so the registry hand-off is untested",
        allow_module_level=True,
    )

MODEL = "digits-student"
TEACHER_MODEL = "digits-student-as-teacher"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` as a process; started first because it takes ~20 s to boot, awaited only when needed."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    with open(root / "mlflow.log", "ab") as log:
        process = subprocess.Popen(
            [
                str(MLFLOW_BIN),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    server = {"url": f"http://127.0.0.1:{port}", "process": process, "log": root / "mlflow.log"}
    yield server
    stop_mlflow(server)


def stop_mlflow(server: dict) -> None:
    if server["process"].poll() is None:
        os.killpg(server["process"].pid, signal.SIGTERM)
        try:
            server["process"].wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server["process"].pid, signal.SIGKILL)


def wait_for_mlflow(server: dict) -> httpx.Client:
    def healthy() -> bool:
        assert server["process"].poll() is None, server["log"].read_text()[-3000:]
        try:
            return httpx.get(server["url"] + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 120, 0.5, what="mlflow server to answer /health")
    return httpx.Client(base_url=server["url"], timeout=60)


@pytest.fixture(scope="module")
def deployment(mlflow_server, trained_teacher, tmp_path_factory):
    svc = start_service("embedded", tmp_path_factory.mktemp("svc-mlflow"), MLFLOW_TRACKING_URI=mlflow_server["url"])
    client = svc.client()
    teacher = upload_trained_teacher(client, trained_teacher)["id"]
    archive = digits_zip(tmp_path_factory.mktemp("small") / "small.zip", size=16, per_class_limit=16)
    with open(archive, "rb") as handle:
        dataset = client.post("/v1/datasets", files={"file": ("small.zip", handle)}).json()["id"]
    yield {"service": svc, "client": client, "teacher": teacher, "dataset": dataset}
    stop_service(svc)


def _body(deployment: dict, export: list[str], **extra) -> dict:
    return {
        "name": "digits kd",
        "method": "kd",
        "teachers": [deployment["teacher"]],
        "student": {"arch": "cifar_resnet8"},
        "dataset": deployment["dataset"],
        "training": {"epochs": 1, "batch_size": 32, "augment": "none", "input_size": [3, 16, 16]},
        "export": export,
        **extra,
    }


def _registry_events(client: httpx.Client, job_id: str) -> list[dict]:
    return [e for e in client.get(f"/v1/jobs/{job_id}/events/list", params={"limit": 500}).json()["items"] if e["type"] == "registry"]


def _mlflow_json(mlflow: httpx.Client, path: str, **params) -> dict:
    response = mlflow.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_registry_needs_a_configured_server(tmp_path, deployment):
    bare = start_service("embedded", tmp_path, workers=0)
    try:
        response = bare.client().post("/v1/jobs", json=_body(deployment, ["safetensors"], registry={"model_name": MODEL}))
        assert response.status_code == 422 and "MLFLOW_TRACKING_URI" in response.json()["detail"], response.text
    finally:
        stop_service(bare)
    bad_name = deployment["client"].post("/v1/jobs", json=_body(deployment, ["safetensors"], registry={"model_name": "team/model"}))
    assert bad_name.status_code == 422, bad_name.text


def test_a_registered_student_becomes_the_next_jobs_teacher(deployment, mlflow_server):
    """models:/NAME/VERSION (and @alias) is read through MLflow's REST API and artifacts proxy, checked like an upload."""
    client = deployment["client"]
    mlflow = wait_for_mlflow(mlflow_server)
    first = client.post("/v1/jobs", json=_body(deployment, ["safetensors"], registry={"model_name": TEACHER_MODEL})).json()
    first = wait_for_job(client, first["id"], timeout=300)
    assert first["status"] == "succeeded", (first["error"], deployment["service"].logs()[-3000:])
    registered = wait_until(lambda: _registry_events(client, first["id"]), 120, 0.5, what="the registry event")[0]["detail"]
    student = next(a for a in client.get(f"/v1/jobs/{first['id']}/artifacts").json()["items"] if a["kind"] == "student_safetensors")

    body = {
        "uri": f"models:/{TEACHER_MODEL}/{registered['version']}",
        "format": "safetensors",
        "arch": "cifar_resnet8",
        "num_classes": 10,
        "input_size": [3, 16, 16],
        "name": "distilled once",
    }
    created = client.post("/v1/teachers", json=body)
    assert created.status_code == 201, created.text
    teacher = created.json()
    assert teacher["uri"] == body["uri"] and teacher["sha256"] == student["sha256"] and teacher["size_bytes"] == student["size_bytes"]
    assert client.get(f"/v1/teachers/{teacher['id']}").json()["uri"] == body["uri"]

    aliased = mlflow.post("/api/2.0/mlflow/registered-models/alias", json={"name": TEACHER_MODEL, "alias": "champion", "version": registered["version"]})
    assert aliased.status_code == 200, aliased.text
    by_alias = client.post("/v1/teachers", json={**body, "uri": f"models:/{TEACHER_MODEL}@champion"})
    assert by_alias.status_code == 201 and by_alias.json()["sha256"] == student["sha256"], by_alias.text
    for uri, fmt, words in [
        (f"models:/{TEACHER_MODEL}/999", "safetensors", ["refused to find version 999", "RESOURCE_DOES_NOT_EXIST"]),
        (f"models:/{TEACHER_MODEL}@nobody", "safetensors", ["alias 'nobody'"]),
        (body["uri"], "onnx", ["student.safetensors", "none of them is a onnx file"]),
    ]:
        refused = client.post("/v1/teachers", json={**body, "uri": uri, "format": fmt})
        assert refused.status_code == 422 and all(w in refused.json()["detail"] for w in words), refused.text

    second = client.post("/v1/jobs", json={**_body(deployment, ["safetensors"]), "teachers": [teacher["id"]]}).json()
    second = wait_for_job(client, second["id"], timeout=300)
    assert second["status"] == "succeeded", second["error"]
    assert second["spec"]["teachers"] == [teacher["id"]] and "teacher/val/top1" in second["metrics"], second["metrics"]


def test_finished_student_is_registered_with_run_metrics_and_identical_artifacts(deployment, mlflow_server):
    client = deployment["client"]
    mlflow = wait_for_mlflow(mlflow_server)
    created = client.post(
        "/v1/jobs", json=_body(deployment, ["safetensors", "torchscript", "onnx"], registry={"model_name": MODEL, "stage_tags": {"stage": "candidate"}})
    )
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["registry"] == {"model_name": MODEL, "stage_tags": {"stage": "candidate"}}
    job = wait_for_job(client, created.json()["id"], timeout=300)
    assert job["status"] == "succeeded", (job["error"], deployment["service"].logs()[-3000:])
    events = wait_until(lambda: _registry_events(client, job["id"]), 120, 0.5, what="the registry event")
    assert [e["name"] for e in events] == ["registered"], events
    outcome = events[0]["detail"]
    job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["metrics"]["registry/version"] == float(outcome["version"])
    assert outcome["model_name"] == MODEL and outcome["source"].endswith("/student")
    with DistilleryClient(deployment["service"].url, deployment["service"].key) as typed:  # the SSE replay carries it too
        assert [e.detail for e in typed.events(job["id"]) if e.type == "registry"] == [outcome]

    version = _mlflow_json(mlflow, "/api/2.0/mlflow/model-versions/get", name=MODEL, version=outcome["version"])["model_version"]
    assert version["status"] == "READY" and version["run_id"] == outcome["run_id"] and version["source"] == outcome["source"]
    assert {t["key"]: t["value"] for t in version["tags"]} == {"stage": "candidate", "distillery.job_id": job["id"]}

    run = _mlflow_json(mlflow, "/api/2.0/mlflow/runs/get", run_id=outcome["run_id"])["run"]
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "digits kd"
    latest = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    finals = {mlflow_key(name): value for name, value in job["metrics"].items() if name != "registry/version"}
    assert latest == pytest.approx(finals), set(latest) ^ set(finals)
    assert len(_mlflow_json(mlflow, "/api/2.0/mlflow/metrics/get-history", run_id=outcome["run_id"], metric_key="train/loss")["metrics"]) > 1
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["method"] == "kd" and params["student.arch"] == "cifar_resnet8" and params["training.epochs"] == "1"
    assert params["teachers"] == f"{deployment['teacher']} (cifar_resnet8)" and "hyperparams.temperature" in params

    proxy = f"/api/2.0/mlflow-artifacts/artifacts/{run['info']['artifact_uri'].removeprefix('mlflow-artifacts:/')}"
    downloads = {}
    for item in client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]:
        where = f"student/{item['filename']}" if item["kind"].startswith("student_") else item["filename"]
        from_mlflow = mlflow.get(f"{proxy}/{where}")
        assert from_mlflow.status_code == 200, (where, from_mlflow.text[:300])
        downloads[item["kind"]] = client.get(f"/v1/artifacts/{item['id']}").content
        assert from_mlflow.content == downloads[item["kind"]], where
    assert set(downloads) == {"student_safetensors", "student_torchscript", "student_onnx", "report"}
    _student_loads_through_mlflow(mlflow_server["url"], outcome["version"], downloads["student_onnx"])

    # an MLflow outage after training: the job still succeeds, the failure is recorded with its reason
    stop_mlflow(mlflow_server)
    second = client.post("/v1/jobs", json=_body(deployment, ["safetensors"], registry={"model_name": MODEL})).json()
    second = wait_for_job(client, second["id"], timeout=300)
    assert second["status"] == "succeeded" and "registry/version" not in second["metrics"], second
    failed = wait_until(lambda: _registry_events(client, second["id"]), 60, 0.5, what="the registry failure event")
    assert failed[0]["name"] == "failed" and "could not reach MLflow" in failed[0]["detail"]["error"], failed


def _student_loads_through_mlflow(tracking_uri: str, version: str, onnx_bytes: bytes) -> None:
    """``models:/NAME/VERSION`` loads with mlflow.pyfunc (the MLmodel we wrote) and agrees with the ONNX file run directly."""
    import mlflow.pyfunc
    import onnxruntime as ort

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    images = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    predicted = model.predict(images)
    logits = np.asarray(next(iter(predicted.values())) if isinstance(predicted, dict) else predicted)
    direct = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
    assert logits.shape == (2, 10) and np.allclose(logits, direct, rtol=1e-5, atol=1e-6)
