"""``python -m api.bench_service``: the real service under concurrent load from a second process.

Starts the service the way ``distillery`` runs it (embedded default: SQLite, local objects,
filesystem broker) in a temporary data folder, as processes, and measures:

* p50/p99 latency and requests/s of ``GET /v1/jobs/{id}``, ``GET /v1/jobs`` and ``POST /v1/jobs`` at
  concurrency 8 and 64, next to ``GET /healthz`` (no database, no auth) as the floor. The load comes
  from ``python -m api.bench_service load``, a separate process: keep-alive HTTP/1.1 connections on
  plain asyncio streams (a light client, so the generator steals as little CPU as possible),
  bounded in requests and seconds, loopback only. No worker runs then, so queued jobs stay queued.
* submit-to-running latency with an idle worker, and the worker's peak RSS (``/proc``) during jobs.

Prints progress on stderr and, as its last stdout line, the result tables as JSON for
``python -m kdcore.bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (8, 64)
REQUESTS, SECONDS, WARMUP = 2000, 6.0, 200
POST_REQUESTS = 800
REQUEST_TIMEOUT_S = 10.0
P99_TARGET_MS, SUBMIT_TARGET_S = 25.0, 1.0
TIMED_SUBMISSIONS = 3


def _log(message: str) -> None:
    print(f"[api] {message}", file=sys.stderr, flush=True)


def _request(method: str, path: str, port: int, key: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked responses are not expected from these endpoints")
    await reader.readexactly(length)
    return status


async def _load(port: int, request: bytes, concurrency: int, count: int, seconds: float) -> dict:
    """``count`` requests (after ``WARMUP`` unrecorded ones) over ``concurrency`` connections, at most ``seconds``."""
    latencies: list[float] = []
    failures = 0
    budget = {"warmup": min(WARMUP, count // 5), "left": count}
    recording = {"since": 0.0}

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while budget["left"] > 0 and (not recording["since"] or time.perf_counter() - recording["since"] < seconds):
                warm = budget["warmup"] > 0
                budget["warmup" if warm else "left"] -= 1
                if not warm and not recording["since"]:
                    recording["since"] = time.perf_counter()
                started = time.perf_counter()
                writer.write(request)
                try:
                    status = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
                except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    status = 599  # no usable answer: count it, and go on over a fresh connection
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if not warm:
                    latencies.append(time.perf_counter() - started)
                    failures += status >= 400
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - recording["since"]
    ordered = sorted(latencies)
    return {"count": len(ordered), "failures": failures, "rps": len(ordered) / elapsed,
            "p50_ms": 1000 * ordered[len(ordered) // 2], "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


class Deployment:
    """One service: its data folder, environment, and the API/worker processes it started."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
        self.env.update(DISTILLERY_DATA_DIR=str(folder / "var"), DISTILLERY_PORT=str(self.port), DISTILLERY_TENANT_MAX_ACTIVE_JOBS="1000000")
        self.processes: list[subprocess.Popen] = []
        subprocess.run([sys.executable, "-m", "api.cli", "migrate"], env=self.env, cwd=ROOT, check=True, capture_output=True)
        self.key = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--tenant", "bench"], env=self.env, cwd=ROOT,
                                  check=True, capture_output=True, text=True).stdout.strip()

    def start(self, command: str) -> subprocess.Popen:
        log = open(self.folder / f"{command}.log", "ab")  # noqa: SIM115  (the process writes to it until stop)
        process = subprocess.Popen([sys.executable, "-m", "api.cli", command], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        response = client.post("/v1/teachers", files={"file": (path.name, handle)},
                               data={"format": "safetensors", "arch": arch, "num_classes": "10", "input_size": ",".join(map(str, input_size))})
    response.raise_for_status()
    return response.json()["id"]


def _job_body(teacher: str, input_size: tuple[int, int, int], epochs: int = 1) -> dict:
    return {"method": "kd", "teachers": [teacher], "student": {"arch": "cifar_resnet8"}, "dataset": "builtin:digits",
            "training": {"epochs": epochs, "batch_size": 64, "input_size": list(input_size)}, "export": ["safetensors"]}


def _run_load(port: int, key: str, method: str, path: str, body: str, concurrency: int, count: int) -> dict:
    command = [sys.executable, "-m", "api.bench_service", "load", "--port", str(port), "--key", key, "--method", method, "--path", path,
               "--body", body, "--concurrency", str(concurrency), "--count", str(count), "--seconds", str(SECONDS)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout)


def latency_section(folder: Path) -> dict:
    service = Deployment(folder / "latency")
    try:
        service.start("api")
        with service.client() as client:
            service.wait_ready(client)
            body = _job_body(_upload_teacher(client, folder, "cifar_resnet8", (3, 16, 16)), (3, 16, 16))
            jobs = [client.post("/v1/jobs", json=body).json()["id"] for _ in range(60)]
        targets = [("GET /healthz (floor)", "GET", "/healthz", "", REQUESTS), ("GET /v1/jobs/{id}", "GET", f"/v1/jobs/{jobs[0]}", "", REQUESTS),
                   ("GET /v1/jobs", "GET", "/v1/jobs", "", REQUESTS), ("POST /v1/jobs", "POST", "/v1/jobs", json.dumps(body), POST_REQUESTS)]
        rows, floor = [], {}
        for concurrency in CONCURRENCY:
            for label, method, path, payload, count in targets:
                result = _run_load(service.port, service.key, method, path, payload, concurrency, count)
                _log(f"{label} c={concurrency}: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, {result['rps']:.0f} req/s, {result['failures']} failed")
                floor.setdefault(concurrency, result)
                base = floor[concurrency]
                target = f"p99 < {P99_TARGET_MS:.0f} ms" if concurrency == 8 and "floor" not in label else "—"
                ok = "—" if target == "—" else ("yes" if result["p99_ms"] < P99_TARGET_MS and not result["failures"] else "**no**")
                rows.append([label, concurrency, f"{result['p50_ms']:.1f}", f"{result['p99_ms']:.1f}", f"{result['rps']:.0f}",
                             f"{result['p99_ms'] / base['p99_ms']:.1f}×", f"{result['rps'] / base['rps']:.2f}", result["failures"], target, ok])
    finally:
        service.stop()
    return {"title": "API latency under concurrent load (embedded default: SQLite, filesystem broker; load from a second process)",
            "columns": ["Endpoint", "Concurrency", "p50 ms", "p99 ms", "req/s", "p99 vs /healthz", "req/s vs /healthz", "Errors", "Target", "Met"],
            "rows": rows, "notes": [f"{REQUESTS} requests per GET run ({POST_REQUESTS} per POST run) or {SECONDS:.0f} s, whichever ends first, after {WARMUP} unrecorded; "
                                    "one uvicorn process; the load generator shares the same cores"]}


def _tree(root: int) -> list[int]:
    pids, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        pids += [int(c) for c in children]
        frontier += [int(c) for c in children]
    return pids


def _rss_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Every 50 ms: the worker tree's summed RSS, and each process's own high-water mark (VmHWM)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.done = root, threading.Event()
        self.peak_total_kib, self.peak_process_kib = 0, 0

    def run(self) -> None:
        while not self.done.wait(0.05):
            pids = _tree(self.root)
            self.peak_total_kib = max(self.peak_total_kib, sum(_rss_kib(p, "VmRSS") for p in pids))
            self.peak_process_kib = max([self.peak_process_kib, *(_rss_kib(p, "VmHWM") for p in pids)])


def _wait_for_log(path: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{path.name} did not say {text!r} within {timeout:.0f} s")


def worker_section(folder: Path) -> dict:
    from datetime import datetime

    service = Deployment(folder / "worker")
    try:
        service.start("api")
        worker = service.start("worker")
        with service.client() as client:
            service.wait_ready(client)
            body = _job_body(_upload_teacher(client, folder, "cifar_resnet8", (3, 16, 16)), (3, 16, 16))
            _wait_for_log(service.folder / "worker.log", "ready.")
            time.sleep(1.0)
            idle_kib = sum(_rss_kib(p, "VmRSS") for p in _tree(worker.pid))
            sampler = RssSampler(worker.pid)
            sampler.start()
            observed, recorded, outcomes = [], [], []
            for _ in range(TIMED_SUBMISSIONS):
                started = time.perf_counter()
                job = client.post("/v1/jobs", json=body).json()
                while (status := client.get(f"/v1/jobs/{job['id']}").json())["status"] == "queued":
                    time.sleep(0.005)
                observed.append(time.perf_counter() - started)
                while (done := client.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed", "cancelled"):
                    time.sleep(0.2)
                outcomes.append(done["status"])
                recorded.append((datetime.fromisoformat(status["started_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds())
                _log(f"submit→running {observed[-1]:.3f} s (rows: {recorded[-1]:.3f} s), job {done['status']}")
            sampler.done.set()
            sampler.join()
    finally:
        service.stop()
    seen, rows_median = statistics.median(observed), statistics.median(recorded)
    return {"title": "Worker: submit-to-running with an idle worker, and memory during jobs",
            "columns": ["Measure", "Value", "Target", "Met"],
            "rows": [[f"Submit → `running`, seen by a client polling every 5 ms (median of {TIMED_SUBMISSIONS})", f"{seen:.3f} s", f"< {SUBMIT_TARGET_S:.0f} s", "yes" if seen < SUBMIT_TARGET_S else "**no**"],
                     [f"Submit → `running`, from the job's created_at/started_at (median of {TIMED_SUBMISSIONS})", f"{rows_median:.3f} s", f"< {SUBMIT_TARGET_S:.0f} s", "yes" if rows_median < SUBMIT_TARGET_S else "**no**"],
                     ["Peak RSS of one job process (VmHWM)", f"{sampler.peak_process_kib / 1024:.0f} MiB", "—", "—"],
                     ["Peak RSS of the whole worker (all processes, sampled every 50 ms)", f"{sampler.peak_total_kib / 1024:.0f} MiB", "—", "—"],
                     ["Idle worker RSS (all processes)", f"{idle_kib / 1024:.0f} MiB", "—", "—"]],
            "notes": [f"jobs: kd, cifar_resnet8 → cifar_resnet8 on digits at 16×16, 1 epoch, one after another ({', '.join(outcomes)}); "
                      "one job per child process (max-tasks-per-child 1), filesystem broker polled every 0.1 s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.bench_service")
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "latency", "worker", "load"])
    parser.add_argument("--work", type=Path, default=Path("var/bench-service"))
    for name in ("port", "concurrency", "count"):
        parser.add_argument(f"--{name}", type=int, default=0)
    for name in ("key", "method", "path", "body"):
        parser.add_argument(f"--{name}", default="")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args(argv)
    if args.mode == "load":
        request = _request(args.method, args.path, args.port, args.key, args.body.encode())
        print(json.dumps(asyncio.run(_load(args.port, request, args.concurrency, args.count, args.seconds))))
        return 0
    sections = []
    if args.mode in ("all", "latency"):
        sections.append(latency_section(args.work))
    if args.mode in ("all", "worker"):
        sections.append(worker_section(args.work))
    print(json.dumps(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
