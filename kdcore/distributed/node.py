"""``python -m kdcore.distributed.node FOLDER``: one rank per device of this node, through torch's elastic launcher.

This is ``torchrun --standalone --nproc-per-node=N`` called as a library (``elastic_launch``): a
c10d rendezvous on a free local port, ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/
``MASTER_PORT`` set for each rank, no restarts, and every rank stopped as soon as one fails. The
ranks are children of this process, so they stay in the process group its supervisor ends. CPU
ranks are forked from this process with the training stack already imported (as the Celery worker
forks its job processes), which saves each rank seconds of imports; CUDA ranks are spawned fresh,
since a CUDA runtime does not survive a fork.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from torch.distributed.launcher.api import LaunchConfig, elastic_launch

import kdcore.training  # noqa: F401  (imported once here, inherited by forked CPU ranks)
from kdcore.distributed.rank import rank_device_type, run_rank
from kdcore.distributed.world import devices_per_node
from kdcore.spec import JobSpec

MONITOR_INTERVAL_S = 0.1


def main(folder: str) -> None:
    spec = JobSpec.model_validate_json((Path(folder) / "spec.json").read_text())
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=devices_per_node(spec.training),
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=MONITOR_INTERVAL_S,
        start_method="spawn" if rank_device_type(spec) == "cuda" else "fork",
    )
    elastic_launch(config, run_rank)(folder)


if __name__ == "__main__":
    main(sys.argv[1])
