"""Every method on two gloo ranks: after each step the ranks hold the same trained weights, and the teachers never move.

One world of two spawned ranks runs every registered method for a few steps through the trainer's
own ``train_step`` (the DDP-wrapped distiller, the method's own DDP-wrapped generator), comparing
the ranks' weights with an all-gather after each step.
"""

from pathlib import Path

import torch
import torch.distributed as dist
from factories import save_teacher
from gloo_world import run_ranks

from kdcore.events import TrainCallbacks
from kdcore.methods import StepInfo, list_methods
from kdcore.models.loading import Teacher
from kdcore.spec import JobSpec
from kdcore.training import RunGuard, Trainer, prepare_run

INPUT = (3, 16, 16)
STEPS = 3
SMALL = {"deepinversion": {"inversion_iterations": 2, "pool_size": 16, "jitter": 2}, "dafl": {"latent_dim": 32}}


def spec(method, teachers: list, work: Path) -> JobSpec:
    low, _ = method.teacher_count
    return JobSpec(
        method=method.name,
        teachers=teachers[: 2 if method.name == "meal_v2" else low],
        student={"arch": "cifar_resnet8"},
        dataset={"builtin": "digits"} if method.needs_dataset else None,
        hyperparams=SMALL.get(method.name, {}),
        training={
            "epochs": 1,
            "batch_size": 16,
            "seed": 1,
            "input_size": list(INPUT),
            "devices": 2,
            "device": "cpu",
            "steps_per_epoch": STEPS,
            "teacher_cache": "off",
        },
        export=["safetensors"],
        work_dir=work / method.name,
    )


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def same_on_every_rank(module: torch.nn.Module, world) -> bool:
    mine = flat(module)
    gathered = [torch.empty_like(mine) for _ in range(world.size)]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def train_every_method(world, teachers: list, work: Path) -> None:
    for method in list_methods():
        job = spec(method, teachers, work)
        run = prepare_run(job, RunGuard(TrainCallbacks(), None), world)
        originals = [Teacher(source).state_dict() for source in job.teachers]
        trainer = Trainer(run, TrainCallbacks(), RunGuard(TrainCallbacks(), None))
        assert not same_on_every_rank(torch.nn.Linear(4, 4), world), f"{method.name}: ranks share one random stream"
        start = flat(run.distiller.student)
        run.distiller.train()
        assert isinstance(run.model, torch.nn.parallel.DistributedDataParallel), method.name
        for step, batch in enumerate(run.epoch_batches(0, 0)):
            if batch is not None:
                assert len(batch.indices) == job.training.batch_size // world.size
            trainer.train_step(batch, StepInfo(0, step, step, run.steps_per_epoch, 1))
            assert same_on_every_rank(run.distiller.student, world), f"{method.name}: student weights differ between ranks after step {step}"
            for name in method.self_stepped:
                assert same_on_every_rank(getattr(run.distiller, name), world), f"{method.name}: {name} differs between ranks after step {step}"
            assert same_on_every_rank(torch.nn.ParameterList(run.distiller.trainable_parameters()), world), (
                f"{method.name}: trainable modules differ after step {step}"
            )
            for teacher, original in zip(run.distiller.teachers, originals, strict=True):
                for key, value in teacher.state_dict().items():
                    assert torch.equal(value, original[key]), f"{method.name}: teacher {key} changed"
            if step + 1 == STEPS:
                break
        assert not torch.equal(flat(run.distiller.student), start), f"{method.name}: the student did not train"


def test_every_method_keeps_two_ranks_in_step_and_teachers_frozen(tmp_path):
    teachers = [save_teacher(tmp_path, input_size=INPUT, seed=seed) for seed in (0, 1)]
    run_ranks(train_every_method, 2, teachers, tmp_path)
