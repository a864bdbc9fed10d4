"""The whole product path on real processes: upload, submit, watch, download, and check the numbers."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import onnxruntime as ort
import pytest
import torch
from datasets import read_imagefolder_split
from service import wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


# The acceptance run (resnet10t, 6 epochs, > 90%) on the production backends; a cheaper student on the
# embedded default, which exercises the same path: seed 0 scored 0.79 on one CPU and above 0.80 on another
# (the kernels differ), so its floor says it learned (chance is 0.10), not how well.
BUDGET = {"postgres": ("resnet10t", 6, 0.90), "embedded": ("cifar_resnet8", 3, 0.70)}


def test_kd_job_end_to_end(service, trained_teacher, digits32_zip, tmp_path):
    student_arch, epochs, floor = BUDGET[service.backend]
    client = service.client()
    with open(trained_teacher["path"], "rb") as handle:
        teacher = client.post(
            "/v1/teachers",
            files={"file": ("teacher.safetensors", handle)},
            data={"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "3,32,32", "name": "digits cnn"},
        )
    assert teacher.status_code == 201, teacher.text
    teacher = teacher.json()
    assert teacher["params"] > 0 and teacher["supports_features"] is True and teacher["input_size"] == [3, 32, 32]
    with open(digits32_zip, "rb") as handle:
        dataset = client.post("/v1/datasets", files={"file": ("digits32.zip", handle)}, data={"name": "digits32"})
    assert dataset.status_code == 201, dataset.text
    dataset = dataset.json()
    assert dataset["num_classes"] == 10 and dataset["splits"] == {"train": 1437, "val": 360}

    body = {
        "name": f"{student_arch} from a small cnn",
        "method": "kd",
        "teachers": [teacher["id"]],
        "student": {"arch": student_arch},
        "dataset": dataset["id"],
        "hyperparams": {},
        "training": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "augment": "none", "seed": 0},
        "export": ["safetensors", "torchscript", "onnx"],
    }
    created = client.post("/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    job = wait_for_job(client, created.json()["id"], timeout=900)
    assert job["status"] == "succeeded", (job["error"], service.logs())
    assert job["attempts"] == 1 and job["progress"]["fraction"] == 1.0
    metrics = job["metrics"]
    assert metrics["val/top1"] > floor, metrics

    items = {a["kind"]: a for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]}
    assert set(items) == {"student_safetensors", "student_torchscript", "student_onnx", "report"}
    images, labels = read_imagefolder_split(_extract(digits32_zip, tmp_path))

    script_bytes = _download(client, items["student_torchscript"])
    scripted = torch.jit.load(io.BytesIO(script_bytes)).eval()
    with torch.inference_mode():
        script_top1 = _accuracy(scripted(torch.from_numpy(images)).numpy(), labels)
    assert abs(script_top1 - metrics["val/top1"]) <= 0.01, (script_top1, metrics["val/top1"])

    session = ort.InferenceSession(_download(client, items["student_onnx"]), providers=["CPUExecutionProvider"])
    onnx_top1 = _accuracy(session.run(None, {session.get_inputs()[0].name: images})[0], labels)
    assert abs(onnx_top1 - script_top1) <= 0.005

    from safetensors.torch import load_file

    from kdcore.models import create_model

    teacher_model = create_model("cifar_resnet8", num_classes=10).eval()
    teacher_model.load_state_dict(load_file(str(trained_teacher["path"])))
    with torch.inference_mode():
        teacher_top1 = _accuracy(teacher_model(torch.from_numpy(images)).numpy(), labels)
    assert abs(teacher_top1 - metrics["teacher/val/top1"]) <= 0.01

    safetensors_meta = json.loads(json.dumps(items["student_safetensors"]["metadata"]))
    assert safetensors_meta["arch"] == student_arch and json.loads(safetensors_meta["input_size"]) == [3, 32, 32]
    report = _download(client, items["report"]).decode()
    assert "Teacher vs student" in report and "<svg" in report

    series = client.get(f"/v1/jobs/{job['id']}/metrics").json()["series"]
    names = {p["name"] for p in series}
    assert {"train/loss", "train/loss/kd", "train/loss/ce", "val/top1"} <= names
    assert len([p for p in series if p["name"] == "val/top1"]) == epochs

    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        text = "".join(stream.iter_text())
    assert "event: status" in text and '"status": "succeeded"' in text and "event: end" in text

    cached = client.get(f"/v1/artifacts/{items['report']['id']}", headers={"If-None-Match": f'"{items["report"]["sha256"]}"'})
    assert cached.status_code == 304


def _download(client, item) -> bytes:
    response = client.get(f"/v1/artifacts/{item['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{item["sha256"]}"'
    assert item["filename"] in response.headers["content-disposition"]
    return response.content


def _extract(archive, tmp_path):
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(tmp_path / "val-data")
    return tmp_path / "val-data"
