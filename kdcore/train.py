"""The training loop: one function, ``train(spec, callbacks)``, used by the worker and by the CLI.

Losses accumulate on the device and are read every ``log_every_steps`` (no per-step host sync);
checkpoints are written every ``checkpoint_every_steps`` and at each epoch end, and a run whose
work folder holds a checkpoint resumes from it exactly (batches depend only on seed, epoch, step).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from kdcore import build
from kdcore.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from kdcore.data.augment import VariantPool
from kdcore.data.loader import TrainingBatches
from kdcore.errors import Cancelled, NanLoss, OutOfMemory, TimeLimitExceeded
from kdcore.events import MetricPoint, Progress, TrainCallbacks, TrainResult
from kdcore.finish import finish_run
from kdcore.methods import Distiller, StepInfo, get_method
from kdcore.runtime import resolve_runtime
from kdcore.spec import JobSpec
from kdcore.teacher_cache import VARIANTS_PER_SAMPLE, TeacherOutputCache, teacher_store_dir

DATA_FREE_STEPS_PER_EPOCH = 50


def _checkpoint_state(distiller: Distiller, optimizer, schedule, scaler, epoch: int, step: int, global_step: int, history: list[MetricPoint]) -> dict:
    own = {k: v for k, v in distiller.state_dict().items() if not k.startswith("teachers.")}
    return {
        "distiller": own,
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "method_state": distiller.method_state(),
        "epoch": epoch,
        "step": step,
        "global_step": global_step,
        "rng_cpu": torch.get_rng_state(),
        "history": [[p.name, p.step, p.epoch, p.value, p.time] for p in history],
    }


def train(spec: JobSpec, callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Train ``spec`` to the end (or resume it), evaluate, export; raise a ``KdError`` on user errors."""
    callbacks = callbacks or TrainCallbacks()
    started = time.monotonic()
    config = spec.training
    torch.manual_seed(config.seed)
    runtime = resolve_runtime(config)
    method = get_method(spec.method)
    data = build.load_data(spec, method)
    teachers = build.load_teachers(spec, method)
    student = build.build_student(spec, data.num_classes, data.input_size, method)
    hparams = build.parse_hparams(spec, method)
    plan = method.batch_plan(hparams, data.train.labels, config.batch_size, config.seed) if data.train is not None else None
    steps_per_epoch = plan.steps_per_epoch() if plan is not None else (config.steps_per_epoch or getattr(hparams, "steps_per_epoch", DATA_FREE_STEPS_PER_EPOCH))
    distiller = build.build_distiller(spec, method, hparams, student, teachers, data, steps_per_epoch, runtime.device)
    distiller.to(runtime.device)
    if runtime.channels_last:
        distiller.to(memory_format=torch.channels_last)
    if runtime.compile:
        distiller.student.compile()

    def stop_if_asked() -> None:
        if callbacks.should_cancel():
            raise Cancelled("the job was cancelled")
        if config.time_limit_s is not None and time.monotonic() - started > config.time_limit_s:
            raise TimeLimitExceeded(
                f"the job ran past its time limit of {config.time_limit_s:.0f} s while computing teacher outputs; raise training.time_limit_s or lower epochs"
            )

    pool = None
    if data.train is not None and config.teacher_cache == "auto" and teachers and not method.needs_teacher_features:
        if config.augment == "flip_crop":
            pool = VariantPool(len(data.train), data.train.images.shape[-2], data.train.images.shape[-1], config.seed, VARIANTS_PER_SAMPLE)
        distiller.teacher_cache = TeacherOutputCache(
            data.train, pool, len(teachers), runtime.device, teacher_store_dir(spec.work_dir), runtime.amp_dtype, stop_if_asked
        )
    source = TrainingBatches(data.train, plan, runtime.device, config.augment == "flip_crop", pool) if plan is not None else None
    optimizer = build.build_optimizer(config, distiller)
    total_steps = steps_per_epoch * config.epochs
    schedule = build.build_schedule(config, optimizer, total_steps)
    scaler = runtime.grad_scaler()

    work_dir = Path(spec.work_dir)
    checkpoints = work_dir / "checkpoints"
    start_epoch = start_step = global_step = 0
    resumed_from = 0
    if (latest := latest_checkpoint(checkpoints)) is not None:
        state = load_checkpoint(latest)
        distiller.load_state_dict(state["distiller"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        distiller.load_method_state(state["method_state"])
        torch.set_rng_state(state["rng_cpu"])
        start_epoch, start_step, global_step = state["epoch"], state["step"], state["global_step"]
        resumed_from = global_step

    history: list[MetricPoint] = []
    if resumed_from:
        history = [MetricPoint(*row) for row in state.get("history", [])]

    def report(points: list[MetricPoint]) -> None:
        history.extend(points)
        callbacks.on_metrics(points)

    train_seconds = 0.0
    samples = 0
    for epoch in range(start_epoch, config.epochs):
        distiller.train()
        if source is not None:
            batches = source.epoch(epoch, start_step if epoch == start_epoch else 0)
        else:
            batches = iter([None] * (steps_per_epoch - (start_step if epoch == start_epoch else 0)))
        step = start_step if epoch == start_epoch else 0
        running: dict[str, torch.Tensor] = {}
        running_count = 0
        tick = time.perf_counter()
        for batch in batches:
            info = StepInfo(epoch, step, global_step, steps_per_epoch, config.epochs)
            if runtime.channels_last and batch is not None:
                batch.images = batch.images.contiguous(memory_format=torch.channels_last)
            try:
                with runtime.autocast():
                    out = distiller.forward_train(batch, info)
                loss = out["loss"]
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            except torch.OutOfMemoryError as exc:
                raise OutOfMemory(f"out of memory at batch size {config.batch_size}; halve training.batch_size or use a smaller student") from exc
            schedule.step()
            for key, value in out.items():
                if key == "loss" or key.startswith(("loss/", "signal/")):
                    running[key] = running.get(key, 0) + value.detach().float()
            running_count += 1
            samples += config.batch_size
            step += 1
            global_step += 1
            if step % config.log_every_steps == 0 or step == steps_per_epoch:
                values = {k: float(v) / running_count for k, v in running.items()}
                if not all(v == v and abs(v) != float("inf") for v in values.values()):
                    raise NanLoss(f"the loss became NaN or infinite near step {global_step} (epoch {epoch + 1}); lower training.lr or check the teacher")
                train_seconds += time.perf_counter() - tick
                tick = time.perf_counter()
                names = {"loss": "train/loss"}
                points = [
                    MetricPoint(names.get(k, "train/" + k if k.startswith("loss/") else k.replace("signal/", "method/")), global_step, epoch, v)
                    for k, v in values.items()
                ]
                points.append(MetricPoint("train/lr", global_step, epoch, optimizer.param_groups[0]["lr"]))
                points += [MetricPoint(f"method/{k}", global_step, epoch, v) for k, v in distiller.signals().items()]
                report(points)
                callbacks.on_progress(Progress(epoch + 1, config.epochs, global_step, total_steps))
                running, running_count = {}, 0
            if callbacks.should_cancel():
                raise Cancelled("the job was cancelled")
            if config.time_limit_s is not None and time.monotonic() - started > config.time_limit_s:
                raise TimeLimitExceeded(
                    f"the job ran past its time limit of {config.time_limit_s:.0f} s at step {global_step}; raise training.time_limit_s or lower epochs"
                )
            if global_step % config.checkpoint_every_steps == 0 and step < steps_per_epoch:
                path = save_checkpoint(checkpoints, global_step, _checkpoint_state(distiller, optimizer, schedule, scaler, epoch, step, global_step, history))
                callbacks.on_checkpoint(path, global_step)
        train_seconds += time.perf_counter() - tick
        if data.val is not None:
            from kdcore.evaluate import evaluate

            accuracy = evaluate(distiller.export_student(), data.val, device=runtime.device)
            report(
                [
                    MetricPoint("val/top1", global_step, epoch, accuracy.top1),
                    MetricPoint("val/top5", global_step, epoch, accuracy.top5),
                    MetricPoint("val/loss", global_step, epoch, accuracy.loss),
                ]
            )
        path = save_checkpoint(checkpoints, global_step, _checkpoint_state(distiller, optimizer, schedule, scaler, epoch + 1, 0, global_step, history))
        callbacks.on_checkpoint(path, global_step)
        callbacks.on_progress(Progress(epoch + 1, config.epochs, global_step, total_steps))

    throughput = samples / train_seconds if train_seconds > 0 else 0.0
    return finish_run(spec, distiller, teachers, data, runtime.device, throughput, resumed_from, history)
