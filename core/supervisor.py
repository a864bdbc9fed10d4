"""``distillery up``'s process supervisor: the API and the worker side by side, a dead worker restarted.

A worker can die for reasons that do not concern the API (killed for memory, a broker fault, a
bug); taking the API down with it would turn one lost worker into a lost service. So a worker that
exits is started again after a back-off that doubles on each quick death (1 s up to
``MAX_BACKOFF_S``) and resets once a worker has stayed up for ``STABLE_AFTER_S``. Jobs it held are
not lost: their heartbeats stop and the new worker's sweep re-queues them. The API ending (or
Ctrl-C/SIGTERM) stops everything, as before. The timings are a parameter (:class:`RestartTiming`)
so a test can run the real loop in seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
STABLE_AFTER_S = 60.0
POLL_S = 0.5
STOP_GRACE_S = 20.0


def _say(message: str) -> None:
    print(f"distillery up: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RestartTiming:
    """How long a dead worker waits before it is started again, and how often the supervisor looks."""

    first_backoff_s: float = FIRST_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    stable_after_s: float = STABLE_AFTER_S
    poll_s: float = POLL_S


@dataclass
class Child:
    name: str
    command: list[str]
    restart: bool
    timing: RestartTiming = field(default_factory=RestartTiming)
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = field(init=False)
    restarts: int = 0

    def __post_init__(self) -> None:
        self.backoff_s = self.timing.first_backoff_s

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.started_at, self.restart_at = time.monotonic(), None
        _say(f"{self.name} started (pid {self.process.pid})")

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def schedule_restart(self, code: int) -> None:
        now = time.monotonic()
        if now - self.started_at >= self.timing.stable_after_s:
            self.backoff_s = self.timing.first_backoff_s
        self.restart_at, self.process = now + self.backoff_s, None
        self.restarts += 1
        _say(f"{self.name} exited with code {code} after {now - self.started_at:.0f} s; restarting it in {self.backoff_s:.0f} s (restart {self.restarts})")
        self.backoff_s = min(self.backoff_s * 2, self.timing.max_backoff_s)


def _stop(children: list[Child]) -> None:
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def supervise(api: list[str], workers: list[list[str]], timing: RestartTiming = RestartTiming()) -> int:
    """Run the API and the workers until the API ends or a stop signal comes; returns the API's exit code."""
    children = [Child("api", api, restart=False, timing=timing), *(Child(f"worker {i}", cmd, restart=True, timing=timing) for i, cmd in enumerate(workers))]
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for child in children:
        child.start()
    api_code = 0
    try:
        while not stopping:
            for child in children:
                code = child.exited()
                if code is not None and not child.restart:
                    _say(f"{child.name} exited with code {code}; stopping")
                    api_code, stopping = code, True
                elif code is not None:
                    child.schedule_restart(code)
                elif child.process is None and child.restart_at is not None and time.monotonic() >= child.restart_at:
                    child.start()
            time.sleep(timing.poll_s)
    finally:
        _stop(children)
    return api_code
