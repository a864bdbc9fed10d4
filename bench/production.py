"""``python -m bench.production``: the real service under concurrent load from a second process.

Starts the service the way ``distillery`` runs it (embedded default: SQLite, local objects,
filesystem broker) in a temporary data folder, as processes, and measures:

* p50/p99 latency and requests/s of ``GET /v1/jobs/{id}``, ``GET /v1/jobs`` and ``POST /v1/jobs`` at
  concurrency 8 and 64, next to ``GET /healthz`` (no database, no auth) as the floor. The load comes
  from a second process running ``bench/http_load.py`` as a script (loopback, bounded in
  requests and seconds). No worker runs then, so the jobs it submits stay queued.
* submit-to-running latency with an idle worker, and the worker's memory (``/proc``) during jobs.

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
from pathlib import Path

import httpx

from bench.memory import TreeMemorySampler, tree_pss_kib
from bench import http_load

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (8, 64)
REQUESTS, SECONDS = 2000, 6.0
POST_REQUESTS = 800
P99_TARGET_MS, SUBMIT_TARGET_S = 25.0, 1.0
TIMED_SUBMISSIONS = 3
IDLE_SETTLE_S = 2.0
JOB_DEPTH = 2  # `distillery worker` → Celery's main process → one child process per job


def _log(message: str) -> None:
    print(f"[api] {message}", file=sys.stderr, flush=True)


class Deployment:
    """One service: its data folder, environment (migrated, with a key), and the API/worker processes it started."""

    def __init__(self, folder: Path, backends: dict[str, str] | None = None) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
        self.env.update(
            DISTILLERY_DATA_DIR=str(folder / "var"), DISTILLERY_PORT=str(self.port), DISTILLERY_TENANT_MAX_ACTIVE_JOBS="1000000", **(backends or {})
        )
        if backends:
            subprocess.run([sys.executable, "-m", "client.cli", "migrate"], env=self.env, cwd=ROOT, check=True, capture_output=True)
        self.processes: list[subprocess.Popen] = []
        self.key = subprocess.run(
            [sys.executable, "-m", "client.cli", "keys", "create", "--tenant", "bench"], env=self.env, cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()

    def start(self, command: str) -> subprocess.Popen:
        log = open(self.folder / f"{command}.log", "ab")  # noqa: SIM115  (the process writes to it until stop)
        process = subprocess.Popen(
            [sys.executable, "-m", "client.cli", command], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {self.key}"}, timeout=60)

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


def _job_body(teacher: str, input_size: tuple[int, int, int], epochs: int = 1) -> dict:
    return {
        "method": "kd",
        "teachers": [teacher],
        "student": {"arch": "cifar_resnet8"},
        "dataset": "builtin:digits",
        "training": {"epochs": epochs, "batch_size": 64, "input_size": list(input_size)},
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


def latency_section(folder: Path, backends: dict[str, str] | None = None) -> dict:
    backend_label = "PostgreSQL + Redis" if backends else "embedded default: SQLite, filesystem broker"
    service = Deployment(folder / ("latency-production" if backends else "latency"), backends)
    try:
        service.start("api")
        with service.client() as client:
            service.wait_ready(client)
            body = _job_body(_upload_teacher(client, folder, "cifar_resnet8", (3, 16, 16)), (3, 16, 16))
            started = time.perf_counter()
            jobs = [client.post("/v1/jobs", json=body).json()["id"]]
            first_post_s = time.perf_counter() - started
            jobs += [client.post("/v1/jobs", json=body).json()["id"] for _ in range(59)]
        targets = [
            ("GET /healthz (floor)", "GET", "/healthz", "", REQUESTS),
            ("GET /v1/jobs/{id}", "GET", f"/v1/jobs/{jobs[0]}", "", REQUESTS),
            ("GET /v1/jobs", "GET", "/v1/jobs", "", REQUESTS),
            ("POST /v1/jobs", "POST", "/v1/jobs", json.dumps(body), POST_REQUESTS),
        ]
        rows, floor = [], {}
        for concurrency in CONCURRENCY:
            for label, method, path, payload, count in targets:
                result = _run_load(service.port, service.key, method, path, payload, concurrency, count)
                _log(
                    f"{label} c={concurrency}: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, {result['rps']:.0f} req/s, {result['failures']} failed"
                )
                floor.setdefault(concurrency, result)
                base = floor[concurrency]
                target = f"p99 < {P99_TARGET_MS:.0f} ms" if concurrency == 8 and "floor" not in label else "—"
                ok = "—" if target == "—" else ("yes" if result["p99_ms"] < P99_TARGET_MS and not result["failures"] else "**no**")
                rows.append(
                    [
                        label,
                        concurrency,
                        f"{result['p50_ms']:.1f}",
                        f"{result['p99_ms']:.1f}",
                        f"{result['rps']:.0f}",
                        f"{result['p99_ms'] / base['p99_ms']:.1f}×",
                        f"{result['rps'] / base['rps']:.2f}",
                        result["failures"],
                        target,
                        ok,
                    ]
                )
    finally:
        service.stop()
    return {
        "title": f"API latency under concurrent load ({backend_label}; load from a second process)",
        "columns": ["Endpoint", "Concurrency", "p50 ms", "p99 ms", "req/s", "p99 vs /healthz", "req/s vs /healthz", "Errors", "Target", "Met"],
        "rows": rows,
        "notes": [
            f"{REQUESTS} requests per GET run ({POST_REQUESTS} per POST run) or {SECONDS:.0f} s, whichever ends first, after {http_load.WARMUP} unrecorded; "
            "one uvicorn process, its database work on the default threads (1 on SQLite, 4 on PostgreSQL: DISTILLERY_API_DB_THREADS); the load generator shares the same cores; 60 queued jobs exist before the first run, and every POST adds one; "
            f"a request unanswered after {http_load.REQUEST_TIMEOUT_S:.0f} s counts as an error at that latency",
            f"the first POST /v1/jobs after the API started took {first_post_s * 1000:.0f} ms (cold start, not in the table)",
        ],
    }


def worker_section(folder: Path) -> dict:
    from datetime import datetime

    service = Deployment(folder / "worker")
    try:
        service.start("api")
        worker = service.start("worker")
        with service.client() as client:
            service.wait_ready(client)
            body = _job_body(_upload_teacher(client, folder, "cifar_resnet8", (3, 16, 16)), (3, 16, 16))
            log, deadline = service.folder / "worker.log", time.monotonic() + 120
            while "ready." not in log.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.1)
            idle_kib = tree_pss_kib(worker.pid)
            sampler = TreeMemorySampler(worker.pid)
            sampler.start()
            observed, recorded, outcomes = [], [], []
            for index in range(TIMED_SUBMISSIONS + 1):
                time.sleep(IDLE_SETTLE_S)
                started = time.perf_counter()
                job = client.post("/v1/jobs", json=body).json()
                while (status := client.get(f"/v1/jobs/{job['id']}").json())["status"] == "queued":
                    time.sleep(0.005)
                observed.append(time.perf_counter() - started)
                while (done := client.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed", "cancelled"):
                    time.sleep(0.2)
                outcomes.append(done["status"])
                recorded.append((datetime.fromisoformat(status["started_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds())
                _log(f"{'warm-up ' if index == 0 else ''}submit→running {observed[-1]:.3f} s (rows: {recorded[-1]:.3f} s), job {done['status']}")
            sampler.stop()
    finally:
        service.stop()
    seen, rows_median = statistics.median(observed[1:]), statistics.median(recorded[1:])
    return {
        "title": "Worker: submit-to-running with an idle worker, and memory during jobs",
        "columns": ["Measure", "Value", "Target", "Met"],
        "rows": [
            [
                f"Submit → `running`, seen by a client polling every 5 ms (median of {TIMED_SUBMISSIONS})",
                f"{seen:.3f} s",
                f"< {SUBMIT_TARGET_S:.0f} s",
                "yes" if seen < SUBMIT_TARGET_S else "**no**",
            ],
            [
                f"Submit → `running`, from the job's created_at/started_at (median of {TIMED_SUBMISSIONS})",
                f"{rows_median:.3f} s",
                f"< {SUBMIT_TARGET_S:.0f} s",
                "yes" if rows_median < SUBMIT_TARGET_S else "**no**",
            ],
            ["Peak RSS of a job process (VmHWM, shared pages included)", f"{sampler.peak_by_depth_kib.get(JOB_DEPTH, 0) / 1024:.0f} MiB", "—", "—"],
            ["Peak RSS of Celery's main process (VmHWM)", f"{sampler.peak_by_depth_kib.get(JOB_DEPTH - 1, 0) / 1024:.0f} MiB", "—", "—"],
            ["Peak memory of the whole worker (PSS summed over its processes, sampled every 0.25 s)", f"{sampler.peak_total_kib / 1024:.0f} MiB", "—", "—"],
            ["Idle worker memory (PSS summed over its processes)", f"{idle_kib / 1024:.0f} MiB", "—", "—"],
        ],
        "notes": [
            f"jobs: kd, cifar_resnet8 → cifar_resnet8 on digits at 16×16, 1 epoch, one after another, each {IDLE_SETTLE_S:.0f} s after the last "
            f"ended, the first one untimed (warm-up; {observed[0]:.2f} s as seen by the client) ({', '.join(outcomes)}); "
            "one job per child process (max-tasks-per-child 1), filesystem broker polled every 0.1 s"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.production", description="benchmark the service; prints the result tables as JSON")
    parser.add_argument("which", nargs="?", default="all", choices=["all", "latency", "worker"])
    parser.add_argument("--work", type=Path, default=Path("var/bench-service"), help="data folders of the deployments it starts")
    args = parser.parse_args(argv)
    sections = []
    if args.which in ("all", "latency"):
        sections.append(latency_section(args.work))
        with production_backends() as backends:
            if backends is not None:
                sections.append(latency_section(args.work, backends))
    if args.which in ("all", "worker"):
        sections.append(worker_section(args.work))
    print(json.dumps(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
