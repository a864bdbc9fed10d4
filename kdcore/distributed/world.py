"""Which rank of how many this process is, read from torch's launcher contract, and joining that world.

``torch.distributed.run`` (and Ray Train, which starts ranks the same way) sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT``; a process
started without them is a world of one and nothing here touches ``torch.distributed``. Ranks talk
over NCCL on CUDA and gloo on CPU. CPU ranks of one node share its cores, so each gets an equal
share as torch intra-op threads instead of every rank starting one thread per core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from kdcore.errors import BadSpec
from kdcore.spec import TrainingConfig

COLLECTIVE_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics, events and artifacts."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def devices_per_node(config: TrainingConfig) -> int:
    """``training.devices`` resolved on this machine: 'auto' is every visible GPU, or 1 without CUDA."""
    gpus = torch.cuda.device_count() if config.device != "cpu" else 0
    if config.devices == "auto":
        return max(1, gpus)
    if gpus and config.devices > gpus:
        raise BadSpec(f"training.devices is {config.devices} but this worker sees {gpus} GPU(s); use 'auto' or at most {gpus}")
    return config.devices


def world_size_of(config: TrainingConfig) -> int:
    return devices_per_node(config) * config.nodes


def cpu_threads_per_rank(local_size: int) -> int:
    """This node's usable cores split evenly between its CPU ranks, at least one each."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, local_size))


def world_from_environment() -> World:
    """The world torch's launcher described in the environment (a world of one without it)."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(env["RANK"]), size, int(env.get("LOCAL_RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", str(size))))


def join_world(device_type: str) -> World:
    """Join the process group the environment names (NCCL on CUDA, gloo on CPU); a no-op for a world of one.

    A group someone else created first (Ray Train does) is used as it is.
    """
    world = world_from_environment()
    if not world.distributed:
        return world
    if device_type == "cuda":
        torch.cuda.set_device(world.local_rank)
    else:
        torch.set_num_threads(cpu_threads_per_rank(world.local_size))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return world


def leave_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_divisible(batch_size: int, world: World) -> None:
    """The global batch must split into equal rank shares, or ranks would weigh their samples differently."""
    if batch_size % world.size:
        raise BadSpec(f"training.batch_size {batch_size} does not split evenly over {world.size} ranks; use a multiple of {world.size}")
