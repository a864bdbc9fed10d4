"""``distillery up`` on the embedded default (SQLite + filesystem broker) under load.

200 jobs submitted as fast as eight threads can send them while another process keeps both cores
busy (the window in which the API writes messages as the worker reads them): the worker process
never exits and every job reaches exactly one terminal state. Then the
worker is SIGKILLed: ``up`` starts a new one, the API (same process) keeps answering, and a job
submitted afterwards runs. Most jobs are cancelled while queued so the test stays near two
minutes; every twentieth trains for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from backends import backend_env
from processes import children, command_line
from service import ROOT, Service, free_port, wait_for_job, wait_until

from e2e.test_faults import TERMINAL, assert_one_terminal_event_each, tiny_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
JOBS = 200
TRAIN_EVERY = 20
BURNER = """
import hashlib, threading
block = bytes(1 << 24)
def burn():
    while True:
        hashlib.sha256(block).digest()  # releases the GIL: one thread per core
for _ in range(2):
    threading.Thread(target=burn, daemon=True).start()
threading.Event().wait()
"""


def _worker_pid(up: subprocess.Popen) -> int | None:
    workers = [pid for pid in children(up.pid) if " celery " in command_line(pid)]
    return workers[0] if workers else None


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """``distillery up`` as one process: the API and a worker under its supervision."""
    root = tmp_path_factory.mktemp("up")
    (root / "logs").mkdir()
    with backend_env(
        "embedded", root / "var", DISTILLERY_PORT=str(free_port()), DISTILLERY_TENANT_MAX_ACTIVE_JOBS="100000", DISTILLERY_WORKER_CONCURRENCY="2"
    ) as env:
        service = Service(env=env, log_dir=root / "logs", port=int(env["DISTILLERY_PORT"]))
        service.key = service.cli("keys", "create", "--tenant", "acme")
        with open(root / "logs" / "up.log", "ab") as log:
            service.api = subprocess.Popen(
                [sys.executable, "-m", "client.cli", "up"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(service._ready, 180, what="the API under 'distillery up' to answer /readyz")
        wait_until(lambda: _worker_pid(service.api), 60, what="the worker to start")
        yield service
        service.stop()


def _submit(client: httpx.Client, index: int) -> tuple[str, bool]:
    response = client.post("/v1/jobs", json=tiny_job(seed=index))
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    trains = index % TRAIN_EVERY == 0
    if not trains:
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    return job_id, trains


def _ended(client: httpx.Client, ids: list[str]) -> dict[str, dict] | None:
    jobs = {}
    for job_id in ids:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in TERMINAL:
            return None
        jobs[job_id] = job
    return jobs


def test_two_hundred_jobs_on_busy_cores_lose_neither_worker_nor_job(up: Service):
    worker, started = _worker_pid(up.api), time.monotonic()
    burner = subprocess.Popen([sys.executable, "-c", BURNER])
    clients = threading.local()

    def submit(index: int) -> tuple[str, bool]:
        if not hasattr(clients, "client"):
            clients.client = up.client()
        return _submit(clients.client, index)

    try:
        with ThreadPoolExecutor(8) as pool:
            submitted = dict(pool.map(submit, range(JOBS)))
    finally:
        burner.kill()
        burner.wait()
    with up.client() as client:
        finished = wait_until(lambda: _ended(client, list(submitted)), 900, 1.0, f"all {JOBS} jobs to end")
    print(f"\n{JOBS} jobs on busy cores ended in {time.monotonic() - started:.0f} s")
    assert _worker_pid(up.api) == worker, f"the worker was restarted under load:\n{up.logs()}"
    for job_id, trains in submitted.items():
        assert finished[job_id]["status"] == ("succeeded" if trains else "cancelled"), (finished[job_id], up.logs())
    assert_one_terminal_event_each(up, finished)
    bad = Path(up.env["DISTILLERY_DATA_DIR"]) / "broker" / "bad"
    assert not bad.exists() or not any(bad.iterdir()), "a broker message was unreadable"


def test_a_killed_worker_is_restarted_and_the_api_stays_up(up: Service):
    worker = _worker_pid(up.api)
    for pid in [*children(worker), worker]:
        os.kill(pid, signal.SIGKILL)
    replacement = wait_until(lambda: (pid := _worker_pid(up.api)) not in (None, worker) and pid, 60, what="'up' to start a new worker")
    assert up.api.poll() is None and up._ready(), "the API went down with its worker"
    with up.client() as client:
        job = wait_for_job(client, client.post("/v1/jobs", json=tiny_job()).json()["id"], timeout=180)
    assert job["status"] == "succeeded", (job, up.logs())
    assert _worker_pid(up.api) == replacement
    assert "worker 0 exited with code" in (up.log_dir / "up.log").read_text()
