"""Everything one job trains with, built once from its spec: data, teachers, distiller, batches, optimizer.

``kdcore.build`` makes each object and runs every check on user input; this module only puts them
together in the order the run's random stream depends on (so a resumed run rebuilds the same run).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from torch import nn

from kdcore import build
from kdcore.data import pipeline
from kdcore.data.images import ImageSet
from kdcore.data.loader import Batch, TrainingBatches
from kdcore.data.stream import StreamedBatches
from kdcore.distributed.data_parallel import wrap_for_data_parallel
from kdcore.distributed.rank_streams import seed_rank_stream
from kdcore.distributed.world import World, check_divisible
from kdcore.methods import Distiller, Hyperparams, get_method
from kdcore.models.loading import Teacher
from kdcore.phases import PhaseClock
from kdcore.runtime import Runtime, resolve_runtime
from kdcore.spec import JobSpec
from kdcore.teacher_cache import cache_for_run
from kdcore.training.guard import RunGuard

DATA_FREE_STEPS_PER_EPOCH = 50


@dataclass
class TrainingRun:
    spec: JobSpec
    runtime: Runtime
    data: build.RunData
    teachers: list[Teacher]
    distiller: Distiller
    batches: TrainingBatches | StreamedBatches | None
    steps_per_epoch: int
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    world: World
    model: nn.Module
    """What the trainer calls: the distiller, or its DistributedDataParallel wrapper on several ranks."""

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.spec.training.epochs

    def epoch_batches(self, epoch: int, start_step: int) -> Iterable[Batch | None]:
        """The epoch's batches from ``start_step`` on; data-free methods get ``None`` per step and make their own."""
        if self.batches is None:
            return [None] * (self.steps_per_epoch - start_step)
        return self.batches.epoch(epoch, start_step)


def attach_teacher_cache(
    spec: JobSpec,
    distiller: Distiller,
    hparams: Hyperparams,
    data: build.RunData,
    batches: TrainingBatches | None,
    runtime: Runtime,
    guard: RunGuard,
    phases: PhaseClock | None = None,
) -> None:
    """Serve teacher logits through :mod:`kdcore.teacher_cache`, which reuses them only where the student's inputs stay the same.

    Where reuse is off (by the spec, the data path or the cache's own rules) a ``teacher_cache`` notice says why.
    """
    config = spec.training
    if batches is None or not distiller.teachers:
        return
    refusal = pipeline.teacher_reuse_off(config, not isinstance(data.train, ImageSet)) if config.teacher_cache == "auto" else None
    if refusal is None and isinstance(data.train, ImageSet):

        def check() -> None:
            """Called before each chunk the teacher computes: the run is in its ``teacher_outputs`` phase until the epoch's training starts."""
            if phases is not None:
                phases.enter("teacher_outputs")
            guard.check("while computing teacher outputs")

        cache = cache_for_run(spec, type(distiller), hparams, data.train, batches, list(distiller.teachers), runtime.device, runtime.amp_dtype, check)
        distiller.teacher_cache, refusal = cache, cache.reason
    if refusal is not None and config.teacher_cache == "auto":
        guard.callbacks.on_notice("teacher_cache", refusal)


def prepare_run(spec: JobSpec, guard: RunGuard, world: World | None = None, phases: PhaseClock | None = None) -> TrainingRun:
    """Seed, build and place every object of the run; raises a ``KdError`` on anything wrong with the spec.

    On several ranks (``world``) each rank builds the same run, trains on its share of every batch
    and on its own device; :mod:`kdcore.distributed` wraps the distiller for data parallel.
    """
    config = spec.training
    world = world or World()
    check_divisible(config.batch_size, world)
    torch.manual_seed(config.seed)
    runtime = resolve_runtime(config)
    if world.distributed and runtime.device.type == "cuda":
        runtime = replace(runtime, device=torch.device("cuda", world.local_rank))
    method = get_method(spec.method)
    data = build.load_data(spec, method)
    teachers = build.load_teachers(spec, method)
    student = build.build_student(spec, data.num_classes, data.input_size, method)
    hparams = build.parse_hparams(spec, method)
    plan = None
    if data.train is not None:
        plan = pipeline.batch_plan(method.batch_plan(hparams, data.train.labels, config.batch_size, config.seed), data.train, method.name)
    if plan is not None:
        steps_per_epoch = plan.steps_per_epoch()
    else:
        steps_per_epoch = config.steps_per_epoch or int(getattr(hparams, "steps_per_epoch", DATA_FREE_STEPS_PER_EPOCH))
    distiller = build.build_distiller(spec, method, hparams, student, teachers, data, steps_per_epoch, runtime.device, world.rank, world.size)
    distiller.to(runtime.device)
    if runtime.channels_last:
        distiller.to(memory_format=torch.channels_last)
    model = wrap_for_data_parallel(distiller, world, config.sync_bn)
    seed_rank_stream(config.seed, world)
    if runtime.compile:
        distiller.student.compile()
    batches = None
    if plan is not None and data.train is not None:
        batches = pipeline.training_batches(data.train, plan, runtime.device, config, world.rank, world.size)
    attach_teacher_cache(spec, distiller, hparams, data, batches, runtime, guard, phases)
    optimizer = build.build_optimizer(config, distiller)
    schedule = build.build_schedule(config, optimizer, steps_per_epoch * config.epochs)
    return TrainingRun(spec, runtime, data, teachers, distiller, batches, steps_per_epoch, optimizer, schedule, runtime.grad_scaler(), world, model)
