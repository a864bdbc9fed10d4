"""The worker's main process forks every job process: what it runs at import must leave a forked child able to use every thread."""

from __future__ import annotations

import subprocess
import sys

from service import ROOT

CHILD_USES_TWO_THREADS = """
import os, signal, torch
import worker.tasks
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a child stuck on the parent's OpenMP team dies of SIGALRM instead of hanging the test
    torch.set_num_threads(2)
    x = torch.randn(2000, 2000)
    torch.empty_like(x).copy_(x)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
"""


def test_a_job_process_forked_from_the_worker_runs_parallel_ops():
    done = subprocess.run([sys.executable, "-c", CHILD_USES_TWO_THREADS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1:] == ["exit 0"], done.stderr[-2000:]
