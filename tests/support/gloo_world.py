"""Run a function on N CPU ranks joined over gloo, the way torch's launcher would start them."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _enter(local_rank: int, size: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(
        RANK=str(local_rank), WORLD_SIZE=str(size), LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    from kdcore.distributed.world import join_world, leave_world

    world = join_world("cpu")
    try:
        fn(world, *args)
    finally:
        leave_world()


def run_ranks(fn: Callable, size: int, *args: object) -> None:
    """``fn(world, *args)`` on ``size`` spawned ranks; an exception in any rank fails the caller with its traceback."""
    mp.start_processes(_enter, args=(size, free_port(), fn, args), nprocs=size, start_method="spawn")
