"""Memory of a process tree from ``/proc``: RSS, its high-water mark, and PSS (Linux only).

RSS counts every page a process maps, so processes forked from one parent count their shared
pages once each; PSS splits shared pages between their sharers, so a sum of PSS is what a tree of
processes really holds. ``VmHWM`` is the kernel's own high-water mark of a process's RSS, so
sampling cannot miss a process's peak, only a process that lives less than one interval.
"""

from __future__ import annotations

import threading
from pathlib import Path

SAMPLE_EVERY_S = 0.25


def process_tree(root: int) -> list[tuple[int, int]]:
    """``(pid, depth)`` for ``root`` (depth 0) and every process below it.

    A process's children are listed per thread that forked them: Celery's pool, for one, forks the
    replacement of each finished job process from a supervisor thread, not the main one.
    """
    found, frontier = [(root, 0)], [(root, 0)]
    while frontier:
        pid, depth = frontier.pop()
        children = []
        for thread in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children += [(int(c), depth + 1) for c in (thread / "children").read_text().split()]
            except OSError:
                continue
        found += children
        frontier += children
    return found


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS``/``VmHWM`` from ``status``, or ``Pss``/``Pss_Anon``/``Pss_Shmem`` from ``smaps_rollup``; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{'smaps_rollup' if field.startswith('Pss') else 'status'}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_kib(root: int) -> int:
    return sum(memory_kib(pid, "Pss") for pid, _ in process_tree(root))


class TreeMemorySampler(threading.Thread):
    """Every ``SAMPLE_EVERY_S``: the tree's summed PSS, and the peak RSS (VmHWM) of processes at each depth.

    ``peak_anon_kib`` is the peak of the anonymous and shared-memory part of the PSS alone: what the
    processes allocated themselves. The file-backed rest (library code) is divided among every
    process on the machine that maps the same pages, so it moves with unrelated load.
    """

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.done = root, threading.Event()
        self.peak_total_kib = 0
        self.peak_anon_kib = 0
        self.peak_by_depth_kib: dict[int, int] = {}

    def run(self) -> None:
        while not self.done.wait(SAMPLE_EVERY_S):
            tree = process_tree(self.root)
            self.peak_total_kib = max(self.peak_total_kib, sum(memory_kib(pid, "Pss") for pid, _ in tree))
            self.peak_anon_kib = max(self.peak_anon_kib, sum(memory_kib(pid, "Pss_Anon") + memory_kib(pid, "Pss_Shmem") for pid, _ in tree))
            for pid, depth in tree:
                self.peak_by_depth_kib[depth] = max(self.peak_by_depth_kib.get(depth, 0), memory_kib(pid, "VmHWM"))

    def stop(self) -> None:
        self.done.set()
        self.join()
