"""CPU seconds a process tree has used, from ``/proc`` (Linux only).

On a shared machine a request's latency depends on everything else running; the CPU time the
service spends per request does not, so the benchmark reports both.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.memory import process_tree

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system time of one process; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND  # utime and stime: fields 14 and 15 of stat(5)


def tree_cpu_s(root: int) -> float:
    return sum(process_cpu_s(pid) for pid, _ in process_tree(root))
