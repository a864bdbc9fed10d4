"""Each rank's own CPU random stream, so data-free ranks synthesise different batches, kept across resumes.

Rank 0 keeps the stream a single process would have (a one-rank run is unchanged); rank r > 0 is
reseeded from (seed, r) once its modules are built (DDP gives every rank rank 0's weights anyway).
A checkpoint records every rank's stream; resumed at the same world size each rank takes its own
back, so the run continues exactly. At another world size rank 0 takes its own and the others
start fresh streams from (seed, rank, step): the resume is then exact in data order and weights,
but data-free batches of ranks > 0 differ from an uninterrupted run's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from kdcore.data.augment import seeded_generator
from kdcore.distributed.world import World

RANK_STREAM = 5  # other generator streams: kdcore.data.loader (1, 2), kdcore.data.augment (3, 4)


def seed_rank_stream(seed: int, world: World, *keys: int) -> None:
    """Give rank r > 0 a stream of its own; rank 0 keeps the one it has."""
    if world.rank:
        torch.manual_seed(int(seeded_generator(seed, world.rank, RANK_STREAM, *keys).initial_seed()))


def gather_rng_states(world: World) -> list[torch.Tensor] | None:
    """Every rank's CPU generator state, on every rank (a collective: all ranks call it at the same step)."""
    if not world.distributed:
        return None
    states: list[Any] = [None] * world.size
    dist.all_gather_object(states, torch.get_rng_state())
    return states


def restore_rng_state(state: dict[str, Any], world: World, seed: int) -> None:
    """Set this rank's stream from a checkpoint written at any world size."""
    streams = state.get("rng_cpu_ranks")
    if streams is not None and len(streams) == world.size:
        torch.set_rng_state(streams[world.rank])
        return
    torch.set_rng_state(state["rng_cpu"])
    seed_rank_stream(seed, world, state["global_step"])
