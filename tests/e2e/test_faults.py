"""Faults around a running service: Redis and PostgreSQL restarted under a job, the API restarted under
load, and racing duplicate submissions. Each must end with every job in exactly one right state.

The Redis and PostgreSQL restarts use the machine's shared servers (the commands of the machine's
notes), so other deployments on the machine see the same outage and must ride it out too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from service import Service, wait_for_job, wait_until
from sqlalchemy import create_engine, text

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e]
FAST_SWEEP = {
    "DISTILLERY_HEARTBEAT_INTERVAL_S": "1",
    "DISTILLERY_HEARTBEAT_TIMEOUT_S": "30",
    "DISTILLERY_REAPER_INTERVAL_S": "1",
    "DISTILLERY_REQUEUE_AFTER_S": "4",
}
TERMINAL = ("succeeded", "failed", "cancelled")


def tiny_job(epochs: int = 1, **training) -> dict:
    """A supervised cifar_resnet8 on 8×8 grey digits: about a second of training per epoch on a CPU core."""
    return {
        "method": "supervised",
        "student": {"arch": "cifar_resnet8"},
        "dataset": "builtin:digits",
        "export": ["safetensors"],
        "training": {"epochs": epochs, "batch_size": 64, "input_size": [1, 8, 8], "augment": "none", **training},
    }


def database_url(service: Service) -> str:
    return service.env.get("DISTILLERY_DATABASE_URL") or f"sqlite:///{Path(service.env['DISTILLERY_DATA_DIR']).resolve() / 'distillery.db'}"


def status_events(service: Service) -> dict[str, list[str]]:
    """Every job's status events in order, read straight from the database."""
    engine = create_engine(database_url(service))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT j.id, e.name FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id AND e.kind = 'status' ORDER BY e.seq")
            ).all()
    finally:
        engine.dispose()
    events: dict[str, list[str]] = {}
    for job_id, name in rows:
        events.setdefault(job_id, []).extend([name] if name else [])
    return events


def assert_one_terminal_event_each(service: Service, jobs: dict[str, dict]) -> None:
    """Each job's history holds exactly one terminal status, and it is the status the API reports."""
    events = status_events(service)
    assert set(jobs) <= set(events), f"jobs missing from the database: {set(jobs) - set(events)}"
    for job_id, job in jobs.items():
        terminal = [name for name in events[job_id] if name in TERMINAL]
        assert terminal == [job["status"]], (job_id, events[job_id], job["status"])


def _run(*argv: str) -> None:
    if shutil.which(argv[0]) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{argv[0]} is not installed; this test restarts the machine's own server")
        pytest.skip(f"{argv[0]} is not installed")
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def _redis_up() -> bool:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True, text=True).stdout.strip() == "PONG"


def restart_redis(outage_s: float = 2.0) -> None:
    """Shut Redis down without saving (it keeps nothing on disk, so every queued message is lost), then start it again."""
    _run("redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave")
    try:
        wait_until(lambda: not _redis_up(), 30, what="Redis to stop")
        time.sleep(outage_s)
    finally:
        if not _redis_up():
            _run("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "", "--appendonly", "no", "--dir", "/tmp")
        wait_until(_redis_up, 30, what="Redis to answer again")


def restart_postgres() -> None:
    """A fast restart: every open connection is terminated, new ones are refused until it is back."""
    version = sorted(os.listdir("/etc/postgresql"))[0] if os.path.isdir("/etc/postgresql") else "15"
    _run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
    wait_until(lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0, 60, what="PostgreSQL to accept connections")


def _running_past(client: httpx.Client, job_id: str, step: int):
    def check():
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job.get("status") in ("queued", "running", None), job
        return job if job.get("status") == "running" and job["progress"].get("step", 0) >= step else None

    return check


def _training_job(client: httpx.Client, what: str) -> dict:
    """A 25-epoch tiny job, submitted and waited for until it trains past step 10: still running when the fault comes."""
    job = client.post("/v1/jobs", json=tiny_job(epochs=25)).json()
    wait_until(_running_past(client, job["id"], 10), 240, 0.2, what)
    return job


@pytest.fixture(scope="module")
def restartable(tmp_path_factory):
    service = start_service("postgres", tmp_path_factory.mktemp("faults"), workers=1, **FAST_SWEEP)
    yield service
    stop_service(service)


@pytest.mark.slow
@pytest.mark.postgres
def test_jobs_survive_a_redis_restart(restartable):
    """The running job keeps going; the queued job's message dies with Redis and the sweep sends it again."""
    client = restartable.client()
    running = _training_job(client, "the first job to start training")
    queued = client.post("/v1/jobs", json=tiny_job()).json()
    restart_redis()
    assert client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "queued"
    jobs = {j["id"]: wait_for_job(client, j["id"], timeout=300) for j in (running, queued)}
    for job in jobs.values():
        assert job["status"] == "succeeded" and job["attempts"] == 1, (job, restartable.logs())
    assert_one_terminal_event_each(restartable, jobs)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_job_survives_a_postgres_restart(restartable):
    """Every connection dies mid-training: buffered progress goes out later, the job is not reaped, it succeeds once."""
    client = restartable.client()
    job = _training_job(client, "the job to start training")
    restart_postgres()
    done = wait_for_job(client, job["id"], timeout=300)
    assert done["status"] == "succeeded" and done["attempts"] == 1, (done, restartable.logs())
    steps = [point["step"] for point in client.get(f"/v1/jobs/{job['id']}/metrics", params={"name": "train/loss"}).json()["series"]]
    assert steps == sorted(set(steps)) and steps[-1] == done["progress"]["steps"], steps
    assert_one_terminal_event_each(restartable, {job["id"]: done})


@pytest.fixture(scope="module", params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def api_only(request, tmp_path_factory):
    """No worker: submitted jobs stay queued, so the test sees exactly what the API accepted."""
    service = start_service(request.param, tmp_path_factory.mktemp(f"api-{request.param}"), workers=0, DISTILLERY_TENANT_MAX_ACTIVE_JOBS="100000")
    service.backend = request.param  # type: ignore[attr-defined]
    yield service
    stop_service(service)


def post_until_answered(client: httpx.Client, body: dict, key: str, deadline_s: float = 120) -> tuple[httpx.Response, int]:
    """What a careful client does: resend the same request with the same key until the server answers it.

    Returns the answer and how many sends failed on the way (connection refused or dropped, or 503).
    """
    deadline = time.monotonic() + deadline_s
    failures = 0
    while True:
        try:
            response = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            if response.status_code != 503:
                return response, failures
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        failures += 1
        time.sleep(0.05)


def _restart_api(service: Service) -> None:
    os.killpg(service.api.pid, signal.SIGTERM)
    service.api.wait(timeout=30)
    service.start_api()


@pytest.mark.slow
def test_api_restart_under_load_loses_and_duplicates_nothing(api_only):
    """SIGTERM the API while 8 clients submit: every key ends up naming exactly one job, and every accepted job exists."""
    service, threads, per_thread = api_only, 8, 25
    answers: dict[str, list[str]] = {}
    failed_sends = Counter()
    lock = threading.Lock()
    run = time.monotonic_ns()

    def submit(worker: int) -> None:
        with service.client() as client:
            for index in range(per_thread):
                key = f"load-{run}-{worker}-{index}"
                for _ in range(2):  # the second send is a client retrying after it got its answer: it must get the same job
                    response, failures = post_until_answered(client, tiny_job(seed=index), key)
                    assert response.status_code in (200, 201), response.text
                    with lock:
                        answers.setdefault(key, []).append(response.json()["id"])
                        failed_sends["sends"] += failures

    pool = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    wait_until(lambda: len(answers) >= threads * per_thread // 3, 120, 0.05, "a third of the load to be accepted")
    _restart_api(service)
    for thread in pool:
        thread.join(timeout=300)
    assert len(answers) == threads * per_thread
    assert failed_sends["sends"] > 0, "no request met the restart; the test proved nothing"
    assert all(len(set(ids)) == 1 for ids in answers.values()), {k: v for k, v in answers.items() if len(set(v)) > 1}
    accepted = {ids[0] for ids in answers.values()}
    assert len(accepted) == len(answers), "two keys were answered with the same job"
    stored = [job_id for job_id in status_events(service) if job_id in accepted]
    assert Counter(stored) == Counter(accepted)
    with service.client() as client:
        for job_id in accepted:
            assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


def race(service: Service, body: dict, key: str, racers: int = 8) -> list[httpx.Response]:
    """Send the same request from ``racers`` threads released by one barrier."""
    barrier = threading.Barrier(racers)
    results: list[httpx.Response] = []

    def fire() -> None:
        with service.client() as client:
            barrier.wait()
            results.append(client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=fire) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_concurrent_duplicates_make_one_job(api_only):
    """Eight requests with one key released at the same instant: one 201, seven 200s, one job."""
    for attempt in range(4):
        results = race(api_only, tiny_job(seed=attempt), f"race-{time.monotonic_ns()}-{attempt}")
        assert sorted(r.status_code for r in results) == [200] * 7 + [201], [r.text for r in results if r.status_code not in (200, 201)]
        assert len({r.json()["id"] for r in results}) == 1
