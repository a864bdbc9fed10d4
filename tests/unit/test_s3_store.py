"""S3Store against a real S3-compatible server process (moto_server on loopback): multipart, fetch, prefixes, presigning."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from s3server import bucket_keys, s3_server

from core.storage_s3 import S3Store


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("moto")) as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield env
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture
def store(s3_env) -> S3Store:
    return S3Store("distillery", "unit/prefix", endpoint_url=s3_env["AWS_ENDPOINT_URL"])


def test_a_large_file_goes_up_in_parts_and_comes_back_identical(store, s3_env, tmp_path):
    payload = os.urandom(9 * 1024**2 + 123)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    stored = store.put_file("tenants/t1/teachers/tch_1/model.safetensors", source)
    assert stored.size_bytes == len(payload) and stored.sha256 == hashlib.sha256(payload).hexdigest()
    head = store.client.head_object(Bucket="distillery", Key="unit/prefix/tenants/t1/teachers/tch_1/model.safetensors")
    assert "-" in head["ETag"], "above 8 MiB the upload must be multipart (a multipart ETag ends in -<parts>)"
    assert head["Metadata"]["sha256"] == stored.sha256

    fetched = store.fetch(stored.key, tmp_path / "down" / "model.safetensors")
    assert fetched == tmp_path / "down" / "model.safetensors" and fetched.read_bytes() == payload
    assert not (tmp_path / "down" / "model.safetensors.part").exists()
    with store.open(stored.key) as handle:
        assert handle.read(16) == payload[:16]


def test_delete_prefix_removes_only_that_subtree(store, s3_env, tmp_path):
    source = tmp_path / "small.txt"
    source.write_text("x")
    for key in ("tenants/t2/jobs/job_1/a", "tenants/t2/jobs/job_1/sub/b", "tenants/t2/jobs/job_10/c"):
        store.put_file(key, source)
    assert store.exists("tenants/t2/jobs/job_1/a")
    store.delete_prefix("tenants/t2/jobs/job_1")
    remaining = [k for k in bucket_keys(s3_env) if "/t2/" in k]
    assert remaining == ["unit/prefix/tenants/t2/jobs/job_10/c"]
    assert not store.exists("tenants/t2/jobs/job_1/a")


def test_presigned_url_downloads_without_credentials(store, tmp_path):
    source = tmp_path / "report.html"
    source.write_text("<html>report</html>")
    store.put_file("tenants/t3/jobs/job_1/artifacts/report.html", source)
    url = store.presigned_url("tenants/t3/jobs/job_1/artifacts/report.html", "report.html", 60)
    response = httpx.get(url)
    assert response.status_code == 200 and response.text == "<html>report</html>"
    assert 'filename="report.html"' in response.headers["content-disposition"]


def test_check_fails_for_a_missing_bucket_and_keys_cannot_escape(s3_env):
    S3Store("distillery", "", endpoint_url=s3_env["AWS_ENDPOINT_URL"]).check()
    with pytest.raises(ClientError):
        S3Store("no-such-bucket", "", endpoint_url=s3_env["AWS_ENDPOINT_URL"]).check()
    with pytest.raises(ValueError):
        S3Store("distillery", "p", endpoint_url=s3_env["AWS_ENDPOINT_URL"]).put_file("../escape", Path(__file__))


def test_presigned_urls_are_signed_for_the_public_endpoint_when_it_differs(s3_env, tmp_path, monkeypatch):
    from core.config import get_settings

    public = s3_env["AWS_ENDPOINT_URL"].replace("127.0.0.1", "localhost")
    monkeypatch.setenv("DISTILLERY_S3_PUBLIC_ENDPOINT_URL", public)
    get_settings.cache_clear()
    try:
        store = S3Store("distillery", "public", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    finally:
        monkeypatch.delenv("DISTILLERY_S3_PUBLIC_ENDPOINT_URL")
        get_settings.cache_clear()
    source = tmp_path / "student.onnx"
    source.write_bytes(b"onnx bytes")
    store.put_file("a/student.onnx", source)
    url = store.presigned_url("a/student.onnx", "student.onnx", 60)
    assert url.startswith(public + "/")
    assert httpx.get(url).content == b"onnx bytes"
