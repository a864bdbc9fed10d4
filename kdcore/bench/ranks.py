"""``ranks``: samples/s of one ``kd`` job at 1 and 2 CPU ranks (gloo), and at 1 and every GPU on a machine with several.

The figure is each run's own ``time/samples_per_second`` (global samples over the time of the
training steps). The CPU ranks share this machine's cores (each rank gets its share as torch
threads), so two ranks on two cores measure the cost of DDP's gradient all-reduce and the split
batch, not a speed-up from more hardware; with GPUs each rank has a device of its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from kdcore.bench.fixtures import DIGITS, random_teacher
from kdcore.bench.results import Section
from kdcore.distributed.launch import launch
from kdcore.distributed.world import cpu_threads_per_rank
from kdcore.spec import JobSpec

TEACHER, STUDENT = "cifar_resnet20", "cifar_resnet8"
INPUT_SIZE = (3, 32, 32)
BATCH = 128
EPOCHS = 2


def samples_per_second(work: Path, teacher: dict, device: str, devices: int) -> float:
    training = {
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "seed": 0,
        "input_size": list(INPUT_SIZE),
        "device": device,
        "devices": devices,
        "checkpoint_every_steps": 1_000_000,
    }
    spec = JobSpec(method="kd", teachers=[teacher], student={"arch": STUDENT}, dataset=DIGITS, training=training, export=["safetensors"], work_dir=work)
    result = launch(spec)
    assert result.metrics["job/world_size"] == devices
    return result.metrics["time/samples_per_second"]


def run(work: Path) -> Section:
    teacher = random_teacher(work / "teacher", TEACHER, INPUT_SIZE)
    cores = len(os.sched_getaffinity(0))
    section = Section(
        f"One `kd` job on several ranks ({TEACHER} → {STUDENT}, digits at 32×32, global batch {BATCH}, {EPOCHS} epochs)",
        ["device", "ranks", "samples/s", "vs 1 rank"],
    )
    setups = [("cpu", 1), ("cpu", 2)]
    if torch.cuda.device_count() > 1:
        setups += [("cuda", 1), ("cuda", torch.cuda.device_count())]
    single: dict[str, float] = {}
    for device, ranks in setups:
        print(f"[bench] ranks: {device} × {ranks}", file=sys.stderr)
        speed = samples_per_second(work / f"{device}-{ranks}", teacher, device, ranks)
        single.setdefault(device, speed)
        section.rows.append([device, str(ranks), f"{speed:.0f}", f"{speed / single[device]:.2f}×"])
    section.notes.append(
        f"CPU ranks are gloo processes sharing this machine's {cores} cores, with {torch.get_num_threads()} torch thread(s) for 1 rank "
        f"and {cpu_threads_per_rank(2)} each at 2 ranks, and with whatever else runs here (see the load average): "
        "the rows compare data parallel with one process on the same hardware, not more hardware."
    )
    if torch.cuda.device_count() <= 1:
        section.notes.append("No machine with several GPUs here: run `python -m bench ranks` on one for the 1 vs N GPU rows (NCCL).")
    return section
