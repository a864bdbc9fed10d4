"""What each rank runs, whoever started it (torch's elastic launcher or Ray Train): join, train, report.

Every rank trains; rank 0 alone reports, through the relay file its launcher follows. Each rank
writes a pid file, so that anyone can check that no rank outlived its job.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from kdcore.distributed.relay import RelayWriter
from kdcore.distributed.world import join_world, leave_world
from kdcore.errors import KdError
from kdcore.events import TrainCallbacks
from kdcore.spec import JobSpec


def rank_device_type(spec: JobSpec) -> str:
    return "cuda" if spec.training.device != "cpu" and torch.cuda.is_available() else "cpu"


def run_rank(folder: str) -> None:
    """Train the job whose spec lies in ``folder`` as the rank the environment names.

    Any rank that stops on a ``KdError`` (out of memory, NaN loss, a bad spec) says so in the relay,
    so the job fails with that error instead of being retried as a lost rank.
    """
    from kdcore.training import train

    ranks = Path(folder)
    spec = JobSpec.model_validate_json((ranks / "spec.json").read_text())
    world = join_world(rank_device_type(spec))
    (ranks / f"rank-{world.rank}.pid").write_text(str(os.getpid()))
    relay = RelayWriter(ranks / "events.jsonl")
    try:
        result = train(spec, relay if world.is_main else TrainCallbacks(), world)
        if result is not None:
            relay.result(result)
    except KdError as exc:
        relay.error(exc)
        raise
    finally:
        relay.close()
        leave_world()


def run_ray_rank(config: dict[str, str]) -> None:
    """Ray Train's ``train_loop_per_worker``: Ray has set up the process group and the same environment as torch's launcher."""
    run_rank(config["folder"])


if __name__ == "__main__":  # torchrun --standalone --nproc-per-node=N -m kdcore.distributed.rank FOLDER (FOLDER/spec.json)
    run_rank(sys.argv[1])
