"""The loop, in mdistiller's ``BaseTrainer`` shape: ``train`` → ``train_epoch`` → ``train_step``.

``train_step`` is the one place the trainer changes weights (forward through the distiller, backward,
optimizer and schedule step); ``train_epoch`` walks the epoch's batches, logs every
``log_every_steps`` and checkpoints every ``checkpoint_every_steps``; ``train`` resumes, runs the
epochs with a validation and a checkpoint after each, and hands the trained run to ``finish_run``.
A pause request (``should_pause``) stops the run after a checkpoint: at the next step of a single
rank, at the next scheduled checkpoint (every ``checkpoint_every_steps`` and each epoch end) of
several, which decide together there so that every rank stops at the same step. Reported epochs
are 1-based.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch import Tensor

from kdcore.data.loader import Batch
from kdcore.distributed.sync_batchnorm import revert_sync_batchnorm
from kdcore.errors import OutOfMemory, Paused
from kdcore.evaluate import evaluate
from kdcore.events import MetricPoint, Progress, TrainCallbacks, TrainResult
from kdcore.finish import finish_run
from kdcore.methods import StepInfo
from kdcore.phases import PhaseClock
from kdcore.training.guard import RunGuard
from kdcore.training.metrics import MetricLog, RunningLosses, check_finite, training_points, validation_points
from kdcore.training.resume import ResumeState, resume_run, save_run
from kdcore.training.run import TrainingRun


class Trainer:
    def __init__(self, run: TrainingRun, callbacks: TrainCallbacks, guard: RunGuard, phases: PhaseClock | None = None) -> None:
        self.run = run
        self.config = run.spec.training
        self.callbacks = callbacks
        self.guard = guard
        self.phases = phases or PhaseClock(callbacks)
        self.log = MetricLog(callbacks, [])
        self.global_step = 0
        self.train_seconds = 0.0
        self.samples = 0

    def train(self) -> TrainResult | None:
        """Resume from the newest checkpoint if there is one, train to the last epoch, evaluate and export.

        Rank 0 alone evaluates and exports; the other ranks of a multi-rank run return None.
        """
        start = resume_run(self.run)
        self.global_step = start.global_step
        self.log.history = start.history
        for epoch in range(start.epoch, self.config.epochs):
            self.train_epoch(epoch, start.step if epoch == start.epoch else 0)
            self.validate(epoch)
            if (cache := self.run.distiller.teacher_cache) is not None:
                self.log.report([MetricPoint(name, self.global_step, epoch + 1, value) for name, value in cache.metrics().items()])
            self.checkpoint(epoch + 1, 0)
            self.callbacks.on_progress(self.progress(epoch))
            if epoch + 1 < self.config.epochs and self.pause_requested():
                raise Paused(f"paused after epoch {epoch + 1}, at step {self.global_step}")
        run = self.run
        if not run.world.is_main:
            return None
        revert_sync_batchnorm(run.distiller)
        throughput = self.samples / self.train_seconds if self.train_seconds > 0 else 0.0
        result = finish_run(run.spec, run.distiller, run.teachers, run.data, run.runtime.device, throughput, start.global_step, self.log.history, self.phases)
        result.metrics["job/world_size"] = float(run.world.size)
        return result

    def train_epoch(self, epoch: int, start_step: int) -> None:
        run, config = self.run, self.config
        run.distiller.train()
        running = RunningLosses()
        if (cache := run.distiller.teacher_cache) is not None:
            cache.prepare(epoch, list(run.distiller.teachers))  # enters teacher_outputs where it computes
        self.phases.enter("training")
        started = time.perf_counter()
        for step, batch in enumerate(run.epoch_batches(epoch, start_step), start=start_step):
            running.add(self.train_step(batch, StepInfo(epoch, step, self.global_step, run.steps_per_epoch, config.epochs)))
            self.samples += config.batch_size
            self.global_step += 1
            done = step + 1
            if done % config.log_every_steps == 0 or done == run.steps_per_epoch:
                self.log_training(running, epoch)
            self.guard.check(f"at step {self.global_step}")
            if done < run.steps_per_epoch:
                due = self.global_step % config.checkpoint_every_steps == 0
                pausing = (due or not run.world.distributed) and self.pause_requested()
                if due or pausing:
                    self.checkpoint(epoch, done)
                if pausing:
                    raise Paused(f"paused at step {self.global_step}")
        self.train_seconds += time.perf_counter() - started

    def train_step(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        """One step: the distiller's ``forward`` (what a DDP wrapper would call), backward, optimizer and schedule step."""
        run = self.run
        if run.runtime.channels_last and batch is not None:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        try:
            with run.runtime.autocast():
                output = run.model(batch, info)
            run.optimizer.zero_grad(set_to_none=True)
            if run.scaler is not None:
                run.scaler.scale(output["loss"]).backward()
                run.scaler.step(run.optimizer)
                run.scaler.update()
            else:
                output["loss"].backward()
                run.optimizer.step()
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(f"out of memory at batch size {self.config.batch_size}; halve training.batch_size or use a smaller student") from exc
        run.schedule.step()
        return output

    def pause_requested(self) -> bool:
        """Whether to stop here. Several ranks take rank 0's answer (one broadcast), so none trains on alone."""
        wanted = self.callbacks.should_pause()
        if not self.run.world.distributed:
            return wanted
        flag = torch.tensor([float(wanted)], device=self.run.runtime.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def log_training(self, running: RunningLosses, epoch: int) -> None:
        """Report the means since the last report (the one host sync of the interval) and the progress."""
        values = running.read()
        check_finite(values, self.global_step, epoch)
        lr = self.run.optimizer.param_groups[0]["lr"]
        self.log.report(training_points(values, lr, self.run.distiller.signals(), self.global_step, epoch + 1))
        self.callbacks.on_progress(self.progress(epoch))

    def validate(self, epoch: int) -> None:
        """Top-1/top-5/loss of the exportable student on the validation split, when the job has one."""
        if self.run.data.val is not None and self.run.world.is_main:
            accuracy = evaluate(self.run.distiller.export_student(), self.run.data.val, device=self.run.runtime.device)
            self.log.report(validation_points(accuracy, self.global_step, epoch + 1))

    def checkpoint(self, epoch: int, step: int) -> None:
        """Save the run so that it resumes at ``(epoch, step)``: step 0 closes epoch ``epoch`` (1-based), else it is inside epoch ``epoch + 1``."""
        path = save_run(self.run, ResumeState(epoch, step, self.global_step, self.log.history))
        if path is not None:
            self.callbacks.on_checkpoint(path, self.global_step, epoch if step == 0 else epoch + 1, step == 0)

    def progress(self, epoch: int) -> Progress:
        return Progress(epoch + 1, self.config.epochs, self.global_step, self.run.total_steps)
