"""Benchmark results as markdown sections, and the machine they were measured on."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

RESULTS_FILE = Path(".bench") / "results.md"


@dataclass
class Section:
    """One table: a title, column names, rows of cells, and notes printed under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    @classmethod
    def from_json(cls, data: dict) -> Section:
        return cls(data["title"], list(data["columns"]), [list(map(str, r)) for r in data["rows"]], list(data.get("notes", [])))


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, load average {load} (1/5/15 min)"
    )


def report(sections: list[Section], started: float, machine_before: str) -> str:
    header = [
        "## Benchmarks (`make bench`)",
        "",
        f"Machine: {machine_before}.",
        f"Load average at the end: {' / '.join(f'{v:.1f}' for v in os.getloadavg())}; whole run {time.monotonic() - started:.0f} s.",
        "",
    ]
    return "\n".join(header) + "\n".join(s.markdown() for s in sections)


def write_report(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
