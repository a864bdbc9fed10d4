"""The floor for the trainer: the KD loop a person writes by hand in plain PyTorch.

Same models, data, batch size, optimizer, schedule and loss as a ``kd`` job (Hinton KD, τ 4, CE 0.1 +
KD 0.9, plain momentum SGD and cosine decay per step), with none of the job's machinery:
no distiller, no preprocessing wrappers, no metrics, no checkpoints, no callbacks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from kdcore.data.images import ImageSet
from kdcore.models import create_model

SKIPPED_STEPS = 10  # per epoch, left out of the CPU-time figure, as the trainer's first log interval is


@dataclass(frozen=True)
class LoopSpeed:
    """Samples per wall-clock second over all steps, per CPU second of the training thread over the
    steps after each epoch's first ``SKIPPED_STEPS`` (what other processes on the machine cannot
    inflate), and per wall-clock second of the last epoch (compilation and autotuning done by then)."""

    wall: float
    cpu: float
    last_epoch: float = 0.0


def hand_written_kd(
    teacher_file: Path,
    teacher_arch: str,
    student_arch: str,
    data: ImageSet,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    lr: float = 0.05,
    temperature: float = 4.0,
    max_steps: int | None = None,
    device: str = "cpu",
    amp: torch.dtype | None = None,
    channels_last: bool = False,
    compile: bool = False,
) -> LoopSpeed:
    """Train for ``epochs`` and return its speed, timing the steps only.

    On CUDA the whole dataset sits on the GPU before timing starts (no input pipeline at all), models
    and inputs are channels_last when asked, ``amp`` is the autocast dtype (fp16 with a GradScaler),
    and ``compile`` compiles the student as a job's ``training.compile`` does.
    """
    torch.manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    teacher = create_model(teacher_arch, num_classes=data.num_classes, in_chans=data.images.shape[1])
    teacher.load_state_dict(load_file(str(teacher_file)))
    teacher.eval().to(device, memory_format=memory_format)  # type: ignore[call-overload]  # torch's stubs lack the (device, memory_format=...) form Module.to accepts
    student = create_model(student_arch, num_classes=data.num_classes, in_chans=data.images.shape[1])
    student.train().to(device, memory_format=memory_format)  # type: ignore[call-overload]  # torch's stubs lack the (device, memory_format=...) form Module.to accepts
    if compile:
        student.compile()
    all_images, all_labels = data.images.to(device), data.labels.to(device)
    scaler = torch.amp.GradScaler(device) if amp is torch.float16 else None
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = len(data) // batch_size
    total = steps * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    seconds, samples, cpu_seconds, cpu_samples, epoch_samples, epoch_seconds = 0.0, 0, 0.0, 0, 0, 0.0
    for _ in range(epochs):
        order = torch.randperm(len(data), device=device)
        _synchronize(device)
        started, cpu_started, epoch_samples = time.perf_counter(), 0.0, 0
        for step in range(steps if max_steps is None else min(steps, max_steps)):
            if step == SKIPPED_STEPS:
                cpu_started = time.thread_time()
            index = order[step * batch_size : (step + 1) * batch_size]
            images = all_images[index].float().div_(255.0).contiguous(memory_format=memory_format)
            labels = all_labels[index]
            with torch.autocast(device_type=torch.device(device).type, dtype=amp or torch.float32, enabled=amp is not None):
                with torch.no_grad():
                    soft = F.softmax(teacher(images).float() / temperature, dim=1)
                logits = student(images).float()
            kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean") * temperature**2
            loss = 0.1 * F.cross_entropy(logits, labels) + 0.9 * kd
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            schedule.step()
            samples += batch_size
            epoch_samples += batch_size
            cpu_samples += batch_size if step >= SKIPPED_STEPS else 0
        _synchronize(device)
        epoch_seconds = time.perf_counter() - started
        seconds += epoch_seconds
        cpu_seconds += time.thread_time() - cpu_started if cpu_started else 0.0
    return LoopSpeed(samples / seconds, cpu_samples / cpu_seconds if cpu_seconds else 0.0, epoch_samples / epoch_seconds)


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
