"""Run the real service for tests: the ``distillery`` API and worker as processes, over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Service:
    """One deployment: its environment, its API process and any number of worker processes."""

    env: dict[str, str]
    log_dir: Path
    port: int
    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "client.cli", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"distillery {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "client.cli", *args], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_api(self) -> None:
        self.api = self._spawn("api", "api")
        wait_until(self._ready, 180, what="the API to answer /readyz")  # a fresh venv compiles torch and timm on first import

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self) -> subprocess.Popen:
        worker = self._spawn(f"worker{len(self.workers)}", "worker")
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """SIGKILL the worker's whole process group (main process and its job child)."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        self.workers.remove(worker)

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers, self.api]:
            if process is not None:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        self.workers = []
        self.api = None

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=120)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.log_dir.glob("*.log")))


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 600, statuses=("succeeded", "failed", "cancelled")) -> dict:
    def done():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return wait_until(done, timeout, 0.5, what=f"job {job_id} to reach {statuses}")
