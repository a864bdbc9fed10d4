"""``python -m bench.production``: the real service under concurrent load from a second process.

Starts the service the way ``distillery`` runs it (embedded default: SQLite, local objects,
filesystem broker) in a temporary data folder, as processes, and measures:

* p50/p99 latency and requests/s of ``GET /v1/jobs/{id}``, ``GET /v1/jobs`` (a full page of 50
  finished jobs with their metrics, see ``bench.seed``), ``GET /v1/jobs/{id}/events/list`` and
  ``POST /v1/jobs`` at concurrency 8 and 64, next to ``GET /healthz`` (no database, no auth) as the
  floor. The load comes from a second process running ``bench/http_load.py`` as a script
  (loopback, bounded in requests and seconds). No worker runs then, so the jobs it submits stay queued.
* submit-to-running and submit-to-first-training-step latency with an idle worker, and the
  worker's memory (``/proc``) during jobs.

Prints progress on stderr and, as its last stdout line, the result tables as JSON for
``python -m bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx

from bench import http_load
from bench.memory import TreeMemorySampler, tree_pss_kib
from bench.process_cpu import tree_cpu_s
from bench.seed import finish_jobs
from core.config import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (8, 64)
REQUESTS, SECONDS = 2000, 6.0
POST_REQUESTS = 800
P99_TARGET_MS, P50_TARGET_MS, THROUGHPUT_TARGET = 25.0, 8.0, 0.4
SUBMIT_TARGET_S, FIRST_STEP_TARGET_S = 1.0, 2.0
POLL_S = 0.02
LISTED_JOBS, HISTORY_POINTS = 60, 200
TIMED_SUBMISSIONS = 3
IDLE_SETTLE_S = 2.0
JOB_DEPTH = 2  # `distillery worker` → Celery's main process → one child process per job


def _log(message: str) -> None:
    print(f"[api] {message}", file=sys.stderr, flush=True)


class Deployment:
    """One service: its data folder, environment (migrated, with a key), and the API/worker processes it started."""

    def __init__(self, folder: Path, backends: dict[str, str] | None = None, api_processes: int = 1) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
        self.env.update(
            DISTILLERY_DATA_DIR=str(folder / "var"),
            DISTILLERY_PORT=str(self.port),
            DISTILLERY_TENANT_MAX_ACTIVE_JOBS="1000000",
            DISTILLERY_API_PROCESSES=str(api_processes),
            **(backends or {}),
        )
        if backends:
            subprocess.run([sys.executable, "-m", "client.cli", "migrate"], env=self.env, cwd=ROOT, check=True, capture_output=True)
        self.database_url = Settings(data_dir=folder / "var", database_url=(backends or {}).get("DISTILLERY_DATABASE_URL")).resolved_database_url
        self.processes: list[subprocess.Popen] = []
        self.key = self.create_key("bench")

    def create_key(self, tenant: str) -> str:
        command = [sys.executable, "-m", "client.cli", "keys", "create", "--tenant", tenant]
        return subprocess.run(command, env=self.env, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()

    def start(self, command: str) -> subprocess.Popen:
        log = open(self.folder / f"{command}.log", "ab")  # noqa: SIM115  (the process writes to it until stop)
        process = subprocess.Popen(
            [sys.executable, "-m", "client.cli", command], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {key or self.key}"}, timeout=60)

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError("the API did not answer /readyz within 60 s")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _upload_teacher(client: httpx.Client, folder: Path, arch: str, input_size: tuple[int, int, int]) -> str:
    import torch
    from safetensors.torch import save_file

    from kdcore.models import create_model

    torch.manual_seed(0)
    path = folder / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in create_model(arch, num_classes=10, in_chans=input_size[0]).state_dict().items()}, str(path))
    with open(path, "rb") as handle:
        response = client.post(
            "/v1/teachers",
            files={"file": (path.name, handle)},
            data={"format": "safetensors", "arch": arch, "num_classes": "10", "input_size": ",".join(map(str, input_size))},
        )
    response.raise_for_status()
    return response.json()["id"]


def _job_body(teacher: str, input_size: tuple[int, int, int], epochs: int = 1, log_every_steps: int = 10) -> dict:
    return {
        "method": "kd",
        "teachers": [teacher],
        "student": {"arch": "cifar_resnet8"},
        "dataset": "builtin:digits",
        "training": {"epochs": epochs, "batch_size": 64, "input_size": list(input_size), "log_every_steps": log_every_steps},
        "export": ["safetensors"],
    }


def _run_load(port: int, key: str, method: str, path: str, body: str, concurrency: int, count: int) -> dict:
    command = [
        sys.executable,
        http_load.__file__,
        "--port",
        str(port),
        "--key",
        key,
        "--method",
        method,
        "--path",
        path,
        "--body",
        body,
        "--concurrency",
        str(concurrency),
        "--count",
        str(count),
        "--seconds",
        str(SECONDS),
    ]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout)


@contextlib.contextmanager
def production_backends() -> Iterator[dict[str, str] | None]:
    """A fresh PostgreSQL database and a Redis database for the production-shape run, or None when unreachable.

    ``DISTILLERY_BENCH_POSTGRES_ADMIN_URL`` (default: the local server as ``postgres``) and
    ``DISTILLERY_BENCH_REDIS_URL`` (default: local Redis, database 14).
    """
    import psycopg
    import redis

    admin = os.environ.get("DISTILLERY_BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    broker = os.environ.get("DISTILLERY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    name = f"distillery_bench_{os.getpid()}"
    try:
        redis.Redis.from_url(broker, socket_connect_timeout=2).flushdb()
        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except (psycopg.Error, redis.RedisError) as exc:
        _log(f"production-shape run skipped: {type(exc).__name__}: {exc}")
        yield None
        return
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield {"DISTILLERY_DATABASE_URL": f"{base}/{name}", "DISTILLERY_BROKER_URL": broker}
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _latency_row(label: str, concurrency: int, result: dict, floor: dict) -> list:
    """One table row; the targets apply at concurrency 8 to every route but the floor."""
    rps_ratio = result["rps"] / floor["rps"]
    judged = concurrency == 8 and "floor" not in label
    ok = result["p99_ms"] < P99_TARGET_MS and result["p50_ms"] < P50_TARGET_MS and rps_ratio >= THROUGHPUT_TARGET and not result["failures"]
    return [
        label,
        concurrency,
        f"{result['p50_ms']:.1f}",
        f"{result['p99_ms']:.1f}",
        f"{result['rps']:.0f}",
        f"{result['cpu_ms']:.2f}",
        f"{result['p99_ms'] / floor['p99_ms']:.1f}×",
        f"{rps_ratio:.2f}",
        result["failures"],
        f"p50 < {P50_TARGET_MS:.0f}, p99 < {P99_TARGET_MS:.0f} ms, ≥ {THROUGHPUT_TARGET}× req/s" if judged else "—",
        ("yes" if ok else "**no**") if judged else "—",
    ]


def latency_section(folder: Path, api_processes: int, backends: dict[str, str] | None = None) -> dict:
    backend_label = "PostgreSQL + Redis" if backends else "embedded default: SQLite, filesystem broker"
    service = Deployment(folder / ("latency-production" if backends else "latency"), backends, api_processes)
    submitter = service.create_key("bench-submissions")  # its jobs stay off the listed tenant's first page
    try:
        api = service.start("api")
        with service.client() as client:
            service.wait_ready(client)
            body = _job_body(_upload_teacher(client, folder, "cifar_resnet8", (3, 16, 16)), (3, 16, 16))
            started = time.perf_counter()
            jobs = [client.post("/v1/jobs", json=body).json()["id"]]
            first_post_s = time.perf_counter() - started
            jobs += [client.post("/v1/jobs", json=body).json()["id"] for _ in range(LISTED_JOBS - 1)]
        with service.client(submitter) as client:
            submission = _job_body(_upload_teacher(client, folder, "cifar_resnet8", (3, 16, 16)), (3, 16, 16))
        finish_jobs(service.database_url, jobs, jobs[0], HISTORY_POINTS)
        targets = [
            ("GET /healthz (floor)", "GET", "/healthz", "", REQUESTS, service.key),
            ("GET /v1/jobs/{id}", "GET", f"/v1/jobs/{jobs[0]}", "", REQUESTS, service.key),
            ("GET /v1/jobs", "GET", "/v1/jobs", "", REQUESTS, service.key),
            ("GET /v1/jobs/{id}/events/list", "GET", f"/v1/jobs/{jobs[0]}/events/list", "", REQUESTS, service.key),
            ("POST /v1/jobs", "POST", "/v1/jobs", json.dumps(submission), POST_REQUESTS, submitter),
        ]
        rows: list[list] = []
        floor: dict[int, dict] = {}
        for concurrency in CONCURRENCY:
            for label, method, path, payload, count, key in targets:
                cpu_before = tree_cpu_s(api.pid)
                result = _run_load(service.port, key, method, path, payload, concurrency, count)
                result["cpu_ms"] = 1000 * (tree_cpu_s(api.pid) - cpu_before) / (result["warmup"] + result["count"])
                _log(
                    f"{label} c={concurrency}: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, {result['rps']:.0f} req/s, "
                    f"API CPU {result['cpu_ms']:.2f} ms/request, {result['failures']} failed"
                )
                floor.setdefault(concurrency, result)
                rows.append(_latency_row(label, concurrency, result, floor[concurrency]))
    finally:
        service.stop()
    return {
        "title": f"API latency under concurrent load ({backend_label}; load from a second process)",
        "columns": [
            "Endpoint",
            "Concurrency",
            "p50 ms",
            "p99 ms",
            "req/s",
            "API CPU ms/req",
            "p99 vs /healthz",
            "req/s vs /healthz",
            "Errors",
            "Target",
            "Met",
        ],
        "rows": rows,
        "notes": [
            f"{REQUESTS} requests per GET run ({POST_REQUESTS} per POST run) or {SECONDS:.0f} s, whichever ends first, after {http_load.WARMUP} unrecorded; "
            f"{service.env['DISTILLERY_API_PROCESSES']} API processes (`DISTILLERY_API_PROCESSES`), each with its default database threads; the load generator shares the same cores; "
            f"{LISTED_JOBS} jobs exist before the first run, written as finished jobs with their final metrics (so a list page is 50 of them), "
            f"one of them with {HISTORY_POINTS} metric points (its events/list page is the first 50); every POST adds a queued job (for another tenant); "
            f"a request unanswered after {http_load.REQUEST_TIMEOUT_S:.0f} s counts as an error at that latency",
            "API CPU ms/req: user + system time of all API processes over the run (warm-up included) per request served; "
            "unlike the latencies it barely depends on what else the machine runs",
            f"the first POST /v1/jobs after the API started took {first_post_s * 1000:.0f} ms (cold start, not in the table)",
        ],
    }


def _first_metric_time(client: httpx.Client, job_id: str) -> str:
    events = client.get(f"/v1/jobs/{job_id}/events/list", params={"limit": 500}).json()["items"]
    return next(e["time"] for e in events if e["type"] == "metric")


def _timed_job(client: httpx.Client, body: dict) -> dict:
    """Submit one job; the client-seen and row-recorded delays to ``running`` and to its first training step."""
    started = time.perf_counter()
    job = client.post("/v1/jobs", json=body).json()
    seen: dict[str, float] = {}
    while "first_step" not in seen:
        status = client.get(f"/v1/jobs/{job['id']}").json()
        if status["status"] != "queued":
            seen.setdefault("running", time.perf_counter() - started)
        if (status["progress"].get("step") or 0) >= 1 or status["status"] in ("succeeded", "failed", "cancelled"):
            seen["first_step"] = time.perf_counter() - started
        time.sleep(POLL_S)
    while (done := client.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)
    created = datetime.fromisoformat(job["created_at"])
    return {
        **seen,
        "status": done["status"],
        "running_rows": (datetime.fromisoformat(done["started_at"]) - created).total_seconds(),
        "first_step_rows": (datetime.fromisoformat(_first_metric_time(client, job["id"])) - created).total_seconds(),
    }


def worker_section(folder: Path) -> dict:
    service = Deployment(folder / "worker")
    try:
        service.start("api")
        worker = service.start("worker")
        with service.client() as client:
            service.wait_ready(client)
            body = _job_body(_upload_teacher(client, folder, "cifar_resnet8", (3, 16, 16)), (3, 16, 16), log_every_steps=1)
            log, deadline = service.folder / "worker.log", time.monotonic() + 120
            while "ready." not in log.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.1)
            idle_kib = tree_pss_kib(worker.pid)
            sampler = TreeMemorySampler(worker.pid)
            sampler.start()
            timings = []
            for index in range(TIMED_SUBMISSIONS + 1):
                time.sleep(IDLE_SETTLE_S)
                timings.append(_timed_job(client, body))
                t = timings[-1]
                _log(
                    f"{'warm-up ' if index == 0 else ''}submit→running {t['running']:.3f} s (rows {t['running_rows']:.3f} s), "
                    f"submit→first step {t['first_step']:.3f} s (rows {t['first_step_rows']:.3f} s), job {t['status']}"
                )
            sampler.stop()
    finally:
        service.stop()

    def median(key: str) -> float:
        return statistics.median(t[key] for t in timings[1:])

    def timed_row(label: str, key: str, target: float) -> list[str]:
        return [f"{label} (median of {TIMED_SUBMISSIONS})", f"{median(key):.3f} s", f"< {target:.0f} s", "yes" if median(key) < target else "**no**"]

    return {
        "title": "Worker: submit-to-running and submit-to-first-step with an idle worker, and memory during jobs",
        "columns": ["Measure", "Value", "Target", "Met"],
        "rows": [
            timed_row(f"Submit → `running`, seen by a client polling every {POLL_S * 1000:.0f} ms", "running", SUBMIT_TARGET_S),
            timed_row("Submit → `running`, from the job's created_at/started_at", "running_rows", SUBMIT_TARGET_S),
            timed_row("Submit → first training step, seen by the same client (progress.step ≥ 1)", "first_step", FIRST_STEP_TARGET_S),
            timed_row("Submit → first training step, from created_at and the first metric point's time", "first_step_rows", FIRST_STEP_TARGET_S),
            ["Peak RSS of a job process (VmHWM, shared pages included)", f"{sampler.peak_by_depth_kib.get(JOB_DEPTH, 0) / 1024:.0f} MiB", "—", "—"],
            ["Peak RSS of Celery's main process (VmHWM)", f"{sampler.peak_by_depth_kib.get(JOB_DEPTH - 1, 0) / 1024:.0f} MiB", "—", "—"],
            ["Peak memory of the whole worker (PSS summed over its processes, sampled every 0.25 s)", f"{sampler.peak_total_kib / 1024:.0f} MiB", "—", "—"],
            ["Idle worker memory (PSS summed over its processes)", f"{idle_kib / 1024:.0f} MiB", "—", "—"],
        ],
        "notes": [
            f"jobs: kd, cifar_resnet8 → cifar_resnet8 on builtin:digits at 16×16, 1 epoch, `log_every_steps: 1` (so the first step's loss is written "
            f"as soon as it is known), one after another, each {IDLE_SETTLE_S:.0f} s after the last ended, the first one untimed "
            f"(warm-up; {timings[0]['running']:.2f} s to running, {timings[0]['first_step']:.2f} s to its first step) "
            f"({', '.join(t['status'] for t in timings)}); one job per child process (max-tasks-per-child 1), filesystem broker"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.production", description="benchmark the service; prints the result tables as JSON")
    parser.add_argument("which", nargs="?", default="all", choices=["all", "latency", "worker"])
    parser.add_argument("--work", type=Path, default=Path("var/bench-service"), help="data folders of the deployments it starts")
    parser.add_argument(
        "--api-processes",
        type=int,
        default=get_settings().resolved_api_processes,
        help="API processes of the latency runs (default: the service's default here)",
    )
    args = parser.parse_args(argv)
    sections = []
    if args.which in ("all", "latency"):
        sections.append(latency_section(args.work, args.api_processes))
        with production_backends() as backends:
            if backends is not None:
                sections.append(latency_section(args.work, args.api_processes, backends))
    if args.which in ("all", "worker"):
        sections.append(worker_section(args.work))
    print(json.dumps(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
