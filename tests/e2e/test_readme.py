"""README.md runs as pasted: every ```bash and ```python block, in order, against a live service.

A block fenced as ```console is shown to the reader but not run: ``make run`` and ``make test``
(they start or test the very service this test runs) and deployment recipes that need what a
test machine lacks (an S3 bucket, a GPU node, a Ray cluster, docker). The blocks run in one bash session in a
scratch folder that has the repository's ``.venv`` and ``examples/``, as a new user's clone would;
Python blocks run through ``.venv/bin/python`` inside that same session, so what the shell
exported (``DISTILLERY_API_KEY``, IDs) is there too.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from service import ROOT

from e2e.conftest import start_service, stop_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def readme_script(text: str) -> str:
    parts = ["set -euo pipefail"]
    for language, body in FENCE.findall(text):
        if language == "bash":
            parts.append(body)
        elif language == "python":
            parts.append(f".venv/bin/python - <<'README_PYTHON'\n{body}README_PYTHON")
    return "\n".join(parts) + "\n"


def test_readme_blocks_are_found():
    script = readme_script((ROOT / "README.md").read_text())
    assert "curl" in script and "README_PYTHON" in script and "make run" not in script


def test_every_readme_block_runs_as_pasted(tmp_path):
    service = start_service("embedded", tmp_path)
    try:
        user = tmp_path / "clone"
        user.mkdir()
        for name in (".venv", "examples"):
            (user / name).symlink_to(ROOT / name)
        (user / "readme.sh").write_text(readme_script((ROOT / "README.md").read_text()))
        env = {**service.env, "DISTILLERY_URL": service.url, "PATH": os.environ["PATH"]}
        env.pop("DISTILLERY_API_KEY", None)
        done = subprocess.run(["bash", "readme.sh"], cwd=user, env=env, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, f"README block failed\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-6000:]}\n{service.logs()[-4000:]}"
    finally:
        stop_service(service)
