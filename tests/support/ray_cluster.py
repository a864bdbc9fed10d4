"""A two-node Ray cluster on this machine, as the operator would start one: ``ray start --head``, then a second node."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service import free_port

RAY = str(Path(sys.executable).with_name("ray"))
NODE_FLAGS = ["--num-cpus=1", "--disable-usage-stats"]


@contextmanager
def two_node_cluster(temp_dir: Path) -> Iterator[str]:
    """Yields the head's GCS address; every Ray process of this machine is stopped afterwards."""
    address = f"127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    try:
        head = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}", *NODE_FLAGS]
        subprocess.run(head, check=True, timeout=180, capture_output=True)
        subprocess.run([RAY, "start", f"--address={address}", *NODE_FLAGS], check=True, timeout=180, capture_output=True)
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], check=False, timeout=180, capture_output=True)
