"""Multi-rank jobs through the service: a random teacher uploaded once, job bodies, and the ranks a job started."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from factories import save_teacher
from processes import running
from ranks_job import INPUT
from service import Service, wait_for_job, wait_until


def upload_teacher(client: httpx.Client, folder: Path) -> str:
    source = save_teacher(folder, input_size=INPUT)
    with open(source.path, "rb") as handle:
        data = {"format": "safetensors", "arch": source.arch, "num_classes": str(source.num_classes), "input_size": ",".join(map(str, INPUT))}
        created = client.post("/v1/teachers", files={"file": ("t.safetensors", handle)}, data=data)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def kd_body(teacher: str, **training: object) -> dict:
    config = {"epochs": 2, "batch_size": 128, "seed": 3, "input_size": list(INPUT), "device": "cpu", "log_every_steps": 2, "checkpoint_every_steps": 3}
    return {
        "method": "kd",
        "teachers": [teacher],
        "student": {"arch": "cifar_resnet8"},
        "dataset": "builtin:digits",
        "training": {**config, **training},
        "export": ["safetensors"],
    }


def ranks_folder(service: Service, job_id: str) -> Path:
    return Path(service.env["DISTILLERY_DATA_DIR"]).resolve() / "work" / job_id / "ranks"


def wait_for_ranks(service: Service, job_id: str, count: int, timeout: float = 300) -> list[int]:
    """The pids of the job's ranks, once all ``count`` have started."""

    def started():
        pids = [int(p.read_text()) for p in ranks_folder(service, job_id).glob("rank-*.pid") if p.read_text()]
        return pids if len(pids) == count and all(running(pid) for pid in pids) else None

    return wait_until(started, timeout, 0.2, f"{count} ranks of {job_id} to start")


def wait_until_gone(pids: list[int], timeout: float) -> None:
    wait_until(lambda: not any(running(pid) for pid in pids), timeout, 0.1, f"ranks {pids} to end")


def wait_for_step(client: httpx.Client, job_id: str, step: int, timeout: float = 300) -> dict:
    def reached():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] == "running" and job["progress"].get("step", 0) >= step else None

    return wait_until(reached, timeout, 0.2, f"{job_id} to pass step {step}")


def wait_for_success(service: Service, client: httpx.Client, job_id: str) -> dict:
    """The job once it has ended, which must be ``succeeded``: else the failure names its error and the tail of the service's logs."""
    done = wait_for_job(client, job_id, timeout=600)
    assert done["status"] == "succeeded", (done["error"], service.logs()[-3000:])
    return done


def assert_cancel_ends_every_rank(service: Service, body: dict, ranks: int, within_s: float) -> None:
    """Submit ``body``, cancel it once it trains: it ends ``cancelled`` and every one of its ``ranks`` is gone within ``within_s``."""
    client = service.client()
    job = client.post("/v1/jobs", json=body).json()
    pids = wait_for_ranks(service, job["id"], ranks)
    wait_for_step(client, job["id"], 2)
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    asked = time.monotonic()
    done = wait_for_job(client, job["id"], timeout=60)
    assert done["status"] == "cancelled", done["error"]
    wait_until_gone(pids, within_s)
    assert time.monotonic() - asked < within_s + 10
