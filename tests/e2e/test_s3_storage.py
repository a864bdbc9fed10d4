"""S3 object storage on a real S3-compatible server (moto_server on loopback), production-shaped: the API and
the worker have separate data folders (as on separate machines) and share only PostgreSQL, Redis and the bucket."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from datasets import digits_zip
from factories import save_teacher
from s3server import bucket_keys, s3_server
from service import Service, wait_for_job

from client.client import DistilleryClient
from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
PREFIX = "deploy1"


@pytest.fixture(scope="module")
def s3_deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3-svc")
    with s3_server(root) as s3_env:
        svc = start_service("postgres", root, workers=0, DISTILLERY_STORAGE_URL=f"s3://distillery/{PREFIX}", **s3_env)
        worker_side = Service(env={**svc.env, "DISTILLERY_DATA_DIR": str(root / "worker-machine")}, log_dir=svc.log_dir, port=svc.port)
        worker_side.start_worker()
        yield svc, s3_env, root
        worker_side.stop()
        stop_service(svc)


def test_uploads_checkpoints_and_artifacts_live_in_the_bucket(s3_deployment, tmp_path):
    svc, s3_env, root = s3_deployment
    assert httpx.get(svc.url + "/readyz").json()["storage"] == "ok"
    teacher_file = save_teacher(tmp_path, "cifar_resnet8", 10, (3, 16, 16)).path
    archive = digits_zip(tmp_path / "digits16.zip", size=16, per_class_limit=16)
    with DistilleryClient(svc.url, svc.key) as client:
        teacher = client.upload_teacher(teacher_file, format="safetensors", arch="cifar_resnet8", num_classes=10, input_size=(3, 16, 16))
        dataset = client.upload_dataset(archive)
        uploads = bucket_keys(s3_env)
        assert any(k.startswith(f"{PREFIX}/tenants/") and k.endswith(f"/teachers/{teacher.id}/model.safetensors") for k in uploads), uploads
        assert any(k.endswith(f"/datasets/{dataset.id}/archive") for k in uploads), uploads

        job = client.submit_job(
            {
                "method": "kd",
                "teachers": [teacher.id],
                "student": {"arch": "cifar_resnet8"},
                "dataset": dataset.id,
                "training": {"epochs": 2, "batch_size": 32, "augment": "none", "checkpoint_every_steps": 2},
                "export": ["safetensors"],
            }
        )
        done = wait_for_job(client.http, job.id, timeout=300)
        assert done["status"] == "succeeded", (done["error"], svc.logs())

        keys = bucket_keys(s3_env)
        job_keys = [k for k in keys if f"/jobs/{job.id}/" in k]
        assert any("/checkpoints/" in k for k in job_keys), job_keys
        artifact = next(a for a in client.artifacts(job.id) if a.kind == "student_safetensors")
        assert any(k.endswith(f"/jobs/{job.id}/artifacts/{artifact.filename}") for k in job_keys), job_keys
        assert not (root / "var" / "objects").exists() and not (root / "worker-machine" / "objects").exists()

        downloaded = client.download(job.id, tmp_path / "out", kind="student_safetensors")[0]
        assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == artifact.sha256
        link = client.artifact_url(artifact.id)
        assert link.url.startswith(s3_env["AWS_ENDPOINT_URL"]) and "Signature" in link.url
        direct = httpx.get(link.url)
        assert direct.status_code == 200 and hashlib.sha256(direct.content).hexdigest() == artifact.sha256
        assert client.http.get(f"/v1/artifacts/{artifact.id}/url", headers={"Authorization": "Bearer nope"}).status_code == 401

        assert client.http.delete(f"/v1/teachers/{teacher.id}").status_code == 204
        assert not any(f"/teachers/{teacher.id}/" in k for k in bucket_keys(s3_env))
