"""Bad input gets a 4xx that names the problem, and nothing half-written is left behind."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile

import pytest
import torch

from kdcore.models import create_model

pytestmark = pytest.mark.e2e


class _RunsCode:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('/tmp/distillery-pwned').write_text('x')",))


def _problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    for word in words:
        assert word.lower() in body["detail"].lower(), body["detail"]
    return body


def _weights(arch="cifar_resnet8", num_classes=10) -> bytes:
    path = io.BytesIO()
    model = create_model(arch, num_classes=num_classes)
    from safetensors.torch import save

    path.write(save({k: v.contiguous() for k, v in model.state_dict().items()}))
    return path.getvalue()


def _upload_teacher(client, content: bytes, **form):
    data = {"format": "safetensors", "arch": "cifar_resnet8", "num_classes": "10", "input_size": "3,32,32", **form}
    return client.post("/v1/teachers", files={"file": ("model.bin", content)}, data=data)


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_auth_is_required_and_explained(service):
    import httpx

    anonymous = httpx.get(service.url + "/v1/jobs")
    _problem(anonymous, 401, "Authorization")
    wrong = httpx.get(service.url + "/v1/jobs", headers={"Authorization": "Bearer dk_nope"})
    _problem(wrong, 401, "not valid")


def test_teacher_refusals_name_the_problem(service, tmp_path):
    client = service.client()
    before = client.get("/v1/teachers").json()["items"]
    _problem(_upload_teacher(client, _weights(), format="keras"), 422, "format")
    _problem(_upload_teacher(client, _weights(), format="torchscript"), 422, "DISTILLERY_ALLOW_CODE_MODELS")
    _problem(_upload_teacher(client, _weights(), num_classes="7"), 422, "num_classes=7")
    _problem(_upload_teacher(client, _weights(), arch="no_such_net"), 422, "unknown architecture")
    _problem(_upload_teacher(client, b"not safetensors at all"), 422, "safetensors")
    _problem(_upload_teacher(client, _weights(), input_size="32,32"), 422, "C,H,W")
    # a .pt whose pickle would run code, sent as a state dict: refused by the weights-only unpickler
    payload = pickle.dumps({"weight": _RunsCode()})
    _problem(_upload_teacher(client, payload, format="state_dict"), 422, "weights-only")
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1), "evil": _RunsCode()}, buffer)
    _problem(_upload_teacher(client, buffer.getvalue(), format="state_dict"), 422, "weights-only")
    import pathlib

    assert not pathlib.Path("/tmp/distillery-pwned").exists()
    # an ONNX teacher whose output is not [N, num_classes]
    onnx_path = tmp_path / "five.onnx"
    torch.onnx.export(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)),
        (torch.rand(1, 3, 32, 32),),
        str(onnx_path),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    refused = _upload_teacher(client, onnx_path.read_bytes(), format="onnx", arch="")
    _problem(refused, 422, "expected [2, 10]")
    assert client.get("/v1/teachers").json()["items"] == before


def test_a_malformed_or_unlabelled_json_body_is_explained(service):
    """The request-body messages of ``tests/api/test_request_errors.py``, from the real server process."""
    client = service.client()
    jobs_before = client.get("/v1/jobs").json()["items"]
    body = b'{"method": "kd", "training": {"epochs": 1},}'
    malformed = _problem(client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}), 422)
    assert malformed["detail"] == (
        f"the request body is not valid JSON (at character {len(body) - 1}: Expecting property name enclosed in double quotes); send one JSON object"
    )
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type} if content_type else {}
        _problem(client.post("/v1/jobs", content=b'{"method": "kd"}', headers=headers), 422, "set the header 'Content-Type: application/json'")
    assert client.get("/v1/jobs").json()["items"] == jobs_before


@pytest.mark.parametrize(("fmt", "words"), [("safetensors", "not a safetensors file"), ("state_dict", "not a PyTorch .pt/.pth file")])
def test_a_text_file_uploaded_as_weights_is_called_what_it_is_not(service, fmt, words):
    client = service.client()
    before = client.get("/v1/teachers").json()["items"]
    text = b"hello, I am a text file and certainly not a model\n" * 4
    detail = _problem(_upload_teacher(client, text, format=fmt), 422, words, "set 'format'")["detail"]
    assert not detail.rstrip(".").split()[-1].isdigit(), detail  # no bare byte count or opcode at the end
    assert client.get("/v1/teachers").json()["items"] == before


def test_dataset_refusals_name_the_problem(service):
    client = service.client()
    before = len(client.get("/v1/datasets").json()["items"])
    missing_val = _zip({"train/a/1.png": _png(), "train/b/2.png": _png()})
    _problem(client.post("/v1/datasets", files={"file": ("d.zip", missing_val)}), 422, "val/")
    different = _zip({"train/a/1.png": _png(), "train/b/1.png": _png(), "val/a/1.png": _png(), "val/c/1.png": _png()})
    _problem(client.post("/v1/datasets", files={"file": ("d.zip", different)}), 422, "different classes")
    broken = _zip({"train/a/1.png": b"garbage", "train/b/1.png": _png(), "val/a/1.png": _png(), "val/b/1.png": _png()})
    _problem(client.post("/v1/datasets", files={"file": ("d.zip", broken)}), 422, "does not decode")
    slip = _zip({"../../evil.png": _png(), "train/a/1.png": _png()})
    _problem(client.post("/v1/datasets", files={"file": ("d.zip", slip)}), 422, "..")
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("train/a/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    _problem(client.post("/v1/datasets", files={"file": ("d.tar.gz", tar_buffer.getvalue())}), 422, "link")
    _problem(client.post("/v1/datasets", files={"file": ("d.txt", b"hello")}), 422, "neither")
    assert len(client.get("/v1/datasets").json()["items"]) == before


def test_job_refusals_name_the_problem(service):
    client = service.client()
    teacher = _upload_teacher(client, _weights())
    assert teacher.status_code == 201, teacher.text
    tid = teacher.json()["id"]
    three = _zip({f"{split}/{c}/1.png": _png() for split in ("train", "val") for c in "abc"})
    small = client.post("/v1/datasets", files={"file": ("three.zip", three)})
    assert small.status_code == 201, small.text
    base = {"method": "kd", "teachers": [tid], "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 1}}
    jobs_before = client.get("/v1/jobs").json()["items"]
    _problem(client.post("/v1/jobs", json={**base, "method": "magic"}), 422, "unknown method")
    _problem(client.post("/v1/jobs", json={**base, "hyperparams": {"temprature": 3}}), 422, "temprature")
    _problem(client.post("/v1/jobs", json={**base, "hyperparams": {"temperature": -1}}), 422, "temperature")
    _problem(client.post("/v1/jobs", json={**base, "dataset": small.json()["id"]}), 422, "10 classes")
    _problem(client.post("/v1/jobs", json={**base, "dataset": None}), 422, "needs a dataset")
    _problem(client.post("/v1/jobs", json={**base, "teachers": []}), 422, "teacher")
    _problem(client.post("/v1/jobs", json={**base, "student": {"arch": "nonet"}}), 422, "unknown student architecture")
    _problem(client.post("/v1/jobs", json={**base, "training": {}}), 422, "epochs")
    _problem(client.post("/v1/jobs", json={**base, "teachers": ["tch_missing"]}), 422, "does not exist")
    assert client.get("/v1/jobs").json()["items"] == jobs_before


def test_tenants_are_isolated_with_404(service):
    client = service.client()
    teacher = _upload_teacher(client, _weights())
    tid = teacher.json()["id"]
    other = service.client(service.cli("keys", "create", "--tenant", "globex"))
    _problem(other.get(f"/v1/teachers/{tid}"), 404, tid)
    _problem(other.delete(f"/v1/teachers/{tid}"), 404)
    assert all(t["id"] != tid for t in other.get("/v1/teachers").json()["items"])
    job = client.post(
        "/v1/jobs",
        json={"method": "kd", "teachers": [tid], "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 1}},
        headers={"Idempotency-Key": "iso-1"},
    )
    assert job.status_code == 201, job.text
    jid = job.json()["id"]
    _problem(other.get(f"/v1/jobs/{jid}"), 404)
    _problem(other.post(f"/v1/jobs/{jid}/cancel"), 404)
    _problem(other.get(f"/v1/jobs/{jid}/artifacts"), 404)
    _problem(
        other.post(
            "/v1/jobs", json={"method": "kd", "teachers": [tid], "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 1}}
        ),
        422,
        "does not exist",
    )
    # the teacher is in use: deleting it is a conflict until the job ends
    _problem(client.delete(f"/v1/teachers/{tid}"), 409, jid)
    cancelled = client.post(f"/v1/jobs/{jid}/cancel")
    assert cancelled.status_code == 202
    from service import wait_for_job

    assert wait_for_job(client, jid, timeout=120)["status"] == "cancelled"


def test_idempotency_key_returns_the_same_job(service):
    client = service.client()
    teacher = _upload_teacher(client, _weights()).json()["id"]
    body = {"method": "kd", "teachers": [teacher], "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits", "training": {"epochs": 1}}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc"})
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    _problem(client.post("/v1/jobs", json={**body, "name": "other"}, headers={"Idempotency-Key": "abc"}), 422, "different request body")
    client.post(f"/v1/jobs/{first.json()['id']}/cancel")
