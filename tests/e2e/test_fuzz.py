"""Schemathesis against the live server, every check on: no 5xx, every answer as the OpenAPI document says.

The path parameters point at real objects of the fuzzing tenant (a teacher, and a job that has
ended so its event stream is finite), so the fuzzer reaches past the 404s. ``DISTILLERY_FUZZ_EXAMPLES``
sets the examples per operation (the default keeps the run near a minute) and ``DISTILLERY_FUZZ_SEED``
the seed. One schemathesis worker: its parallel workers share a generation cache that is not
thread-safe (an occasional "Runtime Error" inside schemathesis, not in the API).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from service import Service
from teacher_uploads import upload_untrained_grey_teacher

from e2e.conftest import start_service, stop_service
from e2e.test_faults import tiny_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]
RUN_SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
# A schema-valid request can still be refused by a check the schema cannot express: the uploaded
# file's content, whether teacher IDs exist for the tenant, which methods are registered. Those
# operations answer 422 for it, with a reason; everything else about them is still checked.
CONFIG = """
headers = {{ Authorization = "Bearer {key}" }}

[parameters]
"path.job_id" = "{job}"
"path.teacher_id" = "{teacher}"

[[operations]]
include-method = "POST"
include-path = ["/v1/jobs", "/v1/teachers", "/v1/datasets"]
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 404, 409, 422, 429]
"""


def fuzz_examples() -> int:
    return int(os.environ.get("DISTILLERY_FUZZ_EXAMPLES", "40"))


@pytest.fixture
def fuzzed(tmp_path):
    service = start_service("postgres", tmp_path, workers=0, DISTILLERY_TENANT_MAX_ACTIVE_JOBS="100000")
    yield service
    stop_service(service)


def _seed(service: Service) -> dict[str, str]:
    """A teacher and an ended job for the fuzzer's path parameters."""
    client = service.client()
    teacher = upload_untrained_grey_teacher(client)
    job = client.post("/v1/jobs", json={**tiny_job(), "method": "kd", "teachers": [teacher]})
    assert job.status_code == 201, job.text
    assert client.post(f"/v1/jobs/{job.json()['id']}/cancel").json()["status"] == "cancelled"
    return {"key": service.key, "teacher": teacher, "job": job.json()["id"]}


def test_fuzzing_the_openapi_document_finds_no_5xx_and_no_violation(fuzzed: Service, tmp_path: Path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(**_seed(fuzzed)))
    command = [
        sys.executable,
        "-c",
        RUN_SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{fuzzed.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(fuzz_examples()),
        "--seed",
        os.environ.get("DISTILLERY_FUZZ_SEED", "0"),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-2000:] + fuzzed.logs()
