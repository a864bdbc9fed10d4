"""``api``: the service benchmark runs as its own process (``python -m bench.production``).

kdcore never imports the service; this only starts that module and reads the sections it prints
as JSON on its last line of output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kdcore.bench.results import Section

SERVICE_BENCH_TIMEOUT_S = 720


def run(work: Path) -> list[Section]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.production", "--work", str(work / "service")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=SERVICE_BENCH_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return [Section("Service benchmark", ["Result"], [[f"failed with exit code {done.returncode}; see the output above"]])]
    return [Section.from_json(item) for item in json.loads(lines[-1])]
