"""Every job runs in a process of its own, forked from the worker's pre-imported main process, and
that process ends with the job: a crash, a leak or a CUDA context never reaches the next job.

The worker records the process that ran an attempt in the job's ``worker`` column
(``host:pid:attempt``), read here straight from the database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from processes import children, running
from service import wait_for_job, wait_until
from sqlalchemy import create_engine, text

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e]
TINY_JOB = {
    "method": "supervised",
    "student": {"arch": "cifar_resnet8"},
    "dataset": "builtin:digits",
    "export": ["safetensors"],
    "training": {"epochs": 1, "batch_size": 256, "input_size": [1, 8, 8], "augment": "none"},
}


def _job_pid(data_dir: str, job_id: str) -> int:
    engine = create_engine(f"sqlite:///{Path(data_dir).resolve() / 'distillery.db'}")
    try:
        with engine.connect() as connection:
            worker = connection.execute(text("SELECT worker FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one()
    finally:
        engine.dispose()
    return int(worker.split(":")[1])


def test_each_job_gets_a_fresh_process_that_ends_with_it(tmp_path):
    service = start_service("embedded", tmp_path, workers=1)
    try:
        [celery_main] = wait_until(lambda: children(service.workers[0].pid), 60, 0.2, what="Celery's main process")  # below `distillery worker`
        pids = []
        with service.client() as client:
            for _ in range(2):
                job = client.post("/v1/jobs", json=TINY_JOB).json()
                assert wait_for_job(client, job["id"], timeout=300)["status"] == "succeeded", service.logs()
                pid = _job_pid(service.env["DISTILLERY_DATA_DIR"], job["id"])
                assert pid != celery_main
                wait_until(lambda pid=pid: not running(pid), 60, 0.2, what=f"job {job['id']}'s process {pid} to exit")
                pids.append(pid)
        assert pids[0] != pids[1]
        assert running(celery_main)  # the pre-imported parent lives on and forks each job's process
    finally:
        stop_service(service)
