"""``POST /v1/teachers`` with a JSON body, in-process: refusals that need no registry, and teachers read from a
granted ``file://`` prefix and from a real S3-compatible server (moto_server) with the upload's checks.
The MLflow registry is exercised against a real ``mlflow server`` in tests/e2e/test_mlflow_registry.py."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import pytest
from s3server import CREDENTIALS, s3_server
from test_routes import problem

BODY = {"uri": "models:/digits/1", "format": "safetensors", "arch": "cifar_resnet8", "num_classes": 10, "input_size": [3, 32, 32]}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"uri": "https://example.com/model.safetensors"}, ["models:/<name>/<version>", "s3://"]),
        ({"uri": "models:/digits/latest"}, ["version number", "@<alias>"]),
        ({}, ["MLFLOW_TRACKING_URI"]),
        ({"uri": "s3://models/acme/t.safetensors"}, ["outside the prefixes", "DISTILLERY_TEACHER_URI_PREFIXES", "/teachers/"]),
        ({"format": "torchscript"}, ["DISTILLERY_ALLOW_CODE_MODELS"]),
        ({"arch": None}, ["needs 'arch'"]),
        ({"input_size": [3, 32]}, ["C,H,W"]),
        ({"mean": [0.5, 0.5, 0.5]}, ["both mean and std"]),
        ({"bogus": 1}, ["bogus"]),
    ],
)
def test_refused_before_anything_is_read(api, change, words):
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    problem(api.post("/v1/teachers", json=body), 422, *words)


def test_form_uploads_still_reach_the_upload_route(api):
    body = problem(api.post("/v1/teachers", data={"format": "safetensors", "num_classes": "10", "input_size": "3,32,32"}), 422)
    assert any(e["loc"][-1] == "file" for e in body["errors"]), body


def test_openapi_documents_both_bodies_on_one_operation(api):
    content = api.get("/openapi.json").json()["paths"]["/v1/teachers"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert "uri" in content["application/json"]["schema"]["required"]


@pytest.fixture(scope="module")
def teacher_bytes() -> bytes:
    from safetensors.torch import save

    from kdcore.models import create_model

    return save(create_model("cifar_resnet8", num_classes=10).state_dict())


@pytest.fixture
def granted(monkeypatch, app_settings):
    """A function that sets the running app's DISTILLERY_TEACHER_URI_PREFIXES for this test."""
    return lambda prefixes: monkeypatch.setattr(app_settings, "teacher_uri_prefixes", prefixes)


def test_a_file_under_a_granted_prefix_becomes_a_checked_teacher(api, other_tenant, granted, tmp_path, teacher_bytes):
    models = tmp_path / "models"
    tenant = own_tenant(api)
    (models / tenant).mkdir(parents=True)
    (models / tenant / "t.safetensors").write_bytes(teacher_bytes)
    (models / tenant / "notes.safetensors").write_text("not weights")
    (tmp_path / "secret.safetensors").write_bytes(teacher_bytes)
    (models / tenant / "link.safetensors").symlink_to(tmp_path / "secret.safetensors")
    granted([f"file://{models}/{{tenant}}/"])

    uri = f"file://{models}/{tenant}/t.safetensors"
    created = api.post("/v1/teachers", json={**BODY, "uri": uri, "input_size": "3,32,32", "name": "from a folder"})
    assert created.status_code == 201, created.text
    teacher = created.json()
    assert teacher["uri"] == uri and teacher["sha256"] == hashlib.sha256(teacher_bytes).hexdigest() and teacher["size_bytes"] == len(teacher_bytes)
    assert teacher["params"] > 0 and api.get(f"/v1/teachers/{teacher['id']}").json()["uri"] == uri

    problem(api.post("/v1/teachers", json={**BODY, "uri": f"file://{models}/{tenant}/notes.safetensors"}), 422, "teacher was refused")
    problem(api.post("/v1/teachers", json={**BODY, "uri": f"file://{models}/{tenant}/link.safetensors"}), 422, "outside the prefixes")
    problem(api.post("/v1/teachers", json={**BODY, "uri": f"file://{models}/{tenant}/../../secret.safetensors"}), 422, "outside the prefixes")
    problem(api.post("/v1/teachers", json={**BODY, "uri": f"file://{models}/{tenant}/missing.safetensors"}), 422, "could not be read")
    problem(api.post("/v1/teachers", json={**BODY, "uri": uri}, headers=other_tenant), 422, "outside the prefixes")


def test_by_default_a_tenant_may_register_from_its_own_teachers_folder_of_the_store(api, other_tenant, app_settings, teacher_bytes):
    from urllib.parse import urlsplit

    folder = Path(urlsplit(app_settings.resolved_storage_url).path) / "tenants" / own_tenant(api) / "teachers" / "incoming"
    folder.mkdir(parents=True)
    (folder / "t.safetensors").write_bytes(teacher_bytes)
    created = api.post("/v1/teachers", json={**BODY, "uri": (folder / "t.safetensors").as_uri()})
    assert created.status_code == 201, created.text
    problem(api.post("/v1/teachers", json={**BODY, "uri": (folder / "t.safetensors").as_uri()}, headers=other_tenant), 422, "outside the prefixes")


def own_tenant(api) -> str:
    """The tenant ID of the test client's key (what ``{tenant}`` stands for)."""
    from core.api_keys import hash_key
    from core.db import session_scope
    from core.models import ApiKey

    key = api.headers["Authorization"].removeprefix("Bearer ")
    with session_scope() as session:
        return session.query(ApiKey).filter_by(key_hash=hash_key(key)).one().tenant_id


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("moto"), bucket="models") as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], **{k.lower(): v for k, v in CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"})
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def test_an_s3_object_under_a_granted_prefix_becomes_a_teacher(api, granted, s3, teacher_bytes):
    s3.put_object(Bucket="models", Key="acme/t.safetensors", Body=teacher_bytes)
    s3.put_object(Bucket="models", Key="acme-other/t.safetensors", Body=teacher_bytes)
    granted(["s3://models/acme"])

    created = api.post("/v1/teachers", json={**BODY, "uri": "s3://models/acme/t.safetensors"})
    assert created.status_code == 201, created.text
    assert created.json()["sha256"] == hashlib.sha256(teacher_bytes).hexdigest()
    problem(api.post("/v1/teachers", json={**BODY, "uri": "s3://models/acme-other/t.safetensors"}), 422, "outside the prefixes")
    problem(api.post("/v1/teachers", json={**BODY, "uri": "s3://models/acme/missing.safetensors"}), 422, "could not be read", "NoSuchKey")
