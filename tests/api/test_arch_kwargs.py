"""``arch_kwargs`` through the service: a ViT teacher built at 32 px is uploaded, registered by reference, listed,
checked against its weights, and reaches the worker's kdcore spec; a job's student takes its own, refused by name
when not allowed or not taken by the architecture."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from test_routes import problem
from test_teachers_by_reference import own_tenant

VIT = "vit_tiny_patch16_224"
SMALL_VIT = {"img_size": 32, "patch_size": 4}
FORM = {"format": "safetensors", "arch": VIT, "num_classes": "10", "input_size": "3,32,32"}


@pytest.fixture(scope="module")
def api(api):  # noqa: ANN001
    """The app under a tenant of this file's own, so the teachers made here stay out of other files' listings."""
    from fastapi.testclient import TestClient

    from api.main import app
    from core.api_keys import create_key
    from core.db import session_scope

    with session_scope() as session:
        key = create_key(session, "vitco")
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def vit_bytes() -> bytes:
    from safetensors.torch import save

    from kdcore.models import create_model

    return save(create_model(VIT, num_classes=10, arch_kwargs=SMALL_VIT).state_dict())


def _upload(api, content: bytes, **form: str):
    return api.post("/v1/teachers", files={"file": ("vit.safetensors", content)}, data={**FORM, **form})


@pytest.fixture(scope="module")
def vit_teacher(api, vit_bytes) -> dict:
    created = _upload(api, vit_bytes, arch_kwargs=json.dumps(SMALL_VIT), name="vit at 32 px")
    assert created.status_code == 201, created.text
    return created.json()


def test_a_vit_at_32_px_uploads_with_its_arch_kwargs_and_is_listed_with_them(api, vit_teacher):
    assert vit_teacher["arch_kwargs"] == SMALL_VIT and vit_teacher["arch"] == VIT and vit_teacher["params"] > 5_000_000
    assert api.get(f"/v1/teachers/{vit_teacher['id']}").json()["arch_kwargs"] == SMALL_VIT
    listed = {t["id"]: t for t in api.get("/v1/teachers", params={"limit": 200}).json()["items"]}
    assert listed[vit_teacher["id"]]["arch_kwargs"] == SMALL_VIT


def test_without_its_arch_kwargs_the_weights_do_not_fit(api, vit_bytes):
    problem(_upload(api, vit_bytes), 422, "do not fit", "size mismatch")


@pytest.mark.parametrize(
    ("arch_kwargs", "words"),
    [
        ("[32, 4]", ["JSON object", '{"img_size": 32']),
        ("{img_size: 32}", ["JSON object"]),
        ('{"img_size": 32, "pretrained": true}', ["'pretrained'", "may not set", "allowed"]),
        ('{"img_size": [32, "wide"]}', ["arch_kwargs.img_size"]),
    ],
)
def test_a_form_field_that_is_not_an_allowed_json_object_is_refused(api, vit_bytes, arch_kwargs, words):
    problem(_upload(api, vit_bytes, arch_kwargs=arch_kwargs), 422, *words)


def test_arch_kwargs_the_architecture_does_not_take_are_refused(api, vit_bytes):
    problem(_upload(api, vit_bytes, arch="cifar_resnet8", arch_kwargs='{"patch_size": 4}'), 422, "takes no arch_kwargs", "patch_size")
    problem(_upload(api, vit_bytes, format="onnx", arch_kwargs='{"patch_size": 4}'), 422, "arch_kwargs", "'onnx'")


def test_a_teacher_registered_by_reference_keeps_its_arch_kwargs(api, app_settings, monkeypatch, tmp_path, vit_bytes):
    tenant = own_tenant(api)
    (tmp_path / tenant).mkdir()
    (tmp_path / tenant / "vit.safetensors").write_bytes(vit_bytes)
    monkeypatch.setattr(app_settings, "teacher_uri_prefixes", [f"file://{tmp_path}/{{tenant}}/"])
    body = {"uri": f"file://{tmp_path}/{tenant}/vit.safetensors", "format": "safetensors", "arch": VIT, "num_classes": 10, "input_size": [3, 32, 32]}
    problem(api.post("/v1/teachers", json={**body, "arch_kwargs": {"pretrained": True}}), 422, "pretrained", "may not set")
    created = api.post("/v1/teachers", json={**body, "arch_kwargs": SMALL_VIT})
    assert created.status_code == 201, created.text
    assert created.json()["arch_kwargs"] == SMALL_VIT and created.json()["uri"] == body["uri"]


def _kd_job(teacher_id: str, student: dict, method: str = "kd") -> dict:
    return {"method": method, "teachers": [teacher_id], "student": student, "dataset": "builtin:digits", "training": {"epochs": 1, "batch_size": 8}}


def test_a_job_with_student_arch_kwargs_is_stored_and_built_into_the_kdcore_spec(api, app_settings, vit_teacher):
    from core.db import session_scope
    from core.job_spec import StoredJobSpec
    from core.models import JobRow
    from core.storage import get_store
    from worker.spec_builder import build_job_spec

    student = {"arch": VIT, "arch_kwargs": {**SMALL_VIT, "drop_path_rate": 0.1}}
    submitted = api.post("/v1/jobs", json=_kd_job(vit_teacher["id"], student))
    assert submitted.status_code == 201, submitted.text
    with session_scope() as session:
        row = session.scalar(select(JobRow).where(JobRow.id == submitted.json()["id"]))
        assert row.spec["student"]["arch_kwargs"] == student["arch_kwargs"]
        assert StoredJobSpec.model_validate(row.spec).student.arch_kwargs == student["arch_kwargs"]
        spec = build_job_spec(session, app_settings, get_store(), row)
    assert spec.student.arch == VIT and spec.student.arch_kwargs == student["arch_kwargs"]
    assert spec.teachers[0].arch == VIT and spec.teachers[0].arch_kwargs == SMALL_VIT and spec.teachers[0].path.is_file()


def test_a_feature_method_judges_the_student_as_built_with_its_arch_kwargs(api, vit_teacher):
    assert vit_teacher["supports_features"]
    submitted = api.post("/v1/jobs", json=_kd_job(vit_teacher["id"], {"arch": VIT, "arch_kwargs": SMALL_VIT}, method="at"))
    assert submitted.status_code == 201, submitted.text


def test_the_cost_model_builds_teacher_and_student_with_their_arch_kwargs(api, vit_teacher):
    body = _kd_job(vit_teacher["id"], {"arch": VIT, "arch_kwargs": SMALL_VIT})
    submitted = api.post("/v1/jobs", json={**body, "training": {**body["training"], "time_limit_s": 1e6}})
    assert submitted.status_code == 201, submitted.text
    problem(api.post("/v1/jobs", json={**body, "training": {**body["training"], "time_limit_s": 1e-3}}), 422, "time_limit_s")


@pytest.mark.parametrize(
    ("student", "words"),
    [
        ({"arch": VIT, "arch_kwargs": {"pretrained": True}}, ["'pretrained'", "may not set"]),
        ({"arch": VIT, "arch_kwargs": {"num_classes": 3}}, ["'num_classes'", "may not set"]),
        ({"arch": "resnet18", "arch_kwargs": {"patch_size": 4}}, ["student.arch_kwargs", "'resnet18'", "patch_size"]),
        ({"arch": "cifar_resnet8", "arch_kwargs": {"drop_rate": 0.1}}, ["student.arch_kwargs", "takes no arch_kwargs", "drop_rate"]),
        ({"arch": "no_such_net", "arch_kwargs": SMALL_VIT}, ["unknown student architecture"]),
    ],
)
def test_student_arch_kwargs_that_are_not_allowed_or_not_taken_are_refused_by_name(api, vit_teacher, student, words):
    problem(api.post("/v1/jobs", json=_kd_job(vit_teacher["id"], student)), 422, *words)


def test_the_cli_uploads_a_teacher_with_arch_kwargs(api, tmp_path, vit_bytes, capsys):
    import argparse

    import httpx

    from client.cli import add_client_commands
    from client.client import DistilleryClient

    (tmp_path / "vit.safetensors").write_bytes(vit_bytes)
    parser = argparse.ArgumentParser()
    add_client_commands(parser.add_subparsers())
    argv = ["teachers", "upload", str(tmp_path / "vit.safetensors"), "--format", "safetensors", "--arch", VIT, "--num-classes", "10"]
    args = parser.parse_args([*argv, "--input-size", "3,32,32", "--arch-kwargs", '{"img_size":32,"patch_size":4}'])

    def through_the_app(request: httpx.Request) -> httpx.Response:  # the in-process app, under the test client's key
        answer = api.request(request.method, request.url.raw_path.decode(), content=request.read(), headers={"content-type": request.headers["content-type"]})
        return httpx.Response(answer.status_code, headers={"content-type": answer.headers["content-type"]}, content=answer.content)

    with DistilleryClient(url="http://testserver", api_key="", transport=httpx.MockTransport(through_the_app)) as client:
        assert args.client_command(client, args) == 0
    teacher_id = capsys.readouterr().out.strip()
    assert api.get(f"/v1/teachers/{teacher_id}").json()["arch_kwargs"] == SMALL_VIT
