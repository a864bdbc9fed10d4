"""Pausing a run: it stops at a step boundary after a checkpoint, and resuming ends bit for bit where an uninterrupted run ends.

Also what the caller hears on the way: phases in order, checkpoints with 1-based epochs, metric
points with 1-based epochs, and a student that can be taken out of any checkpoint.
"""

from __future__ import annotations

import pytest
import torch
from factories import save_teacher
from safetensors import safe_open
from safetensors.torch import load_file

from kdcore.checkpoint_student import write_checkpoint_student
from kdcore.errors import Paused
from kdcore.events import TrainCallbacks
from kdcore.export import load_student_safetensors
from kdcore.spec import JobSpec
from kdcore.training import train

INPUT = (3, 16, 16)
EPOCHS = 2


class Recorder(TrainCallbacks):
    """Keeps every call; asks to pause once ``pause_at`` steps were reported."""

    def __init__(self, pause_at: int | None = None) -> None:
        self.pause_at, self.seen = pause_at, 0
        self.phases: list[str] = []
        self.checkpoints: list[tuple[int, int, bool]] = []
        self.points = []
        self.steps_per_epoch = 0

    def on_progress(self, progress) -> None:
        self.seen = progress.step
        self.steps_per_epoch = progress.steps // progress.epochs

    def on_metrics(self, points) -> None:
        self.points += points

    def on_checkpoint(self, path, global_step: int, epoch: int, epoch_end: bool) -> None:
        self.checkpoints.append((global_step, epoch, epoch_end))

    def on_phase(self, name: str) -> None:
        self.phases.append(name)

    def should_pause(self) -> bool:
        return self.pause_at is not None and self.seen >= self.pause_at


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp("teacher"), input_size=INPUT)


def spec(teacher, work) -> JobSpec:
    return JobSpec(
        method="kd",
        teachers=[teacher],
        student={"arch": "cifar_resnet8"},
        dataset={"builtin": "digits"},
        training={
            "epochs": EPOCHS,
            "batch_size": 256,
            "seed": 3,
            "input_size": list(INPUT),
            "augment": "none",
            "log_every_steps": 1,
            "checkpoint_every_steps": 4,
        },
        export=["safetensors"],
        work_dir=work,
    )


@pytest.fixture(scope="module")
def uninterrupted(teacher, tmp_path_factory):
    callbacks = Recorder()
    work = tmp_path_factory.mktemp("whole")
    result = train(spec(teacher, work), callbacks)
    return result, callbacks, work


def test_an_uninterrupted_run_reports_phases_checkpoints_and_epochs_one_based(uninterrupted):
    result, seen, _ = uninterrupted
    assert seen.phases == ["validating", "teacher_outputs", "training", "exporting", "evaluating"]  # the teacher cache fills before the first step
    per_epoch = seen.steps_per_epoch
    assert (per_epoch * EPOCHS, EPOCHS, True) == seen.checkpoints[-1]
    assert [(step, epoch) for step, epoch, end in seen.checkpoints if end] == [(per_epoch * e, e) for e in range(1, EPOCHS + 1)]
    assert all(epoch == (step - 1) // per_epoch + 1 for step, epoch, end in seen.checkpoints if not end)
    assert [p.epoch for p in seen.points if p.name == "val/top1"] == list(range(1, EPOCHS + 1))
    assert {p.epoch for p in seen.points if p.name == "train/loss" and p.step <= per_epoch} == {1}


@pytest.mark.parametrize("where", ["mid_epoch", "epoch_end"])
def test_a_paused_run_resumes_to_the_same_weights(teacher, uninterrupted, tmp_path, where):
    whole, seen_whole, _ = uninterrupted
    pause_at = 3 if where == "mid_epoch" else seen_whole.steps_per_epoch
    paused = Recorder(pause_at)
    with pytest.raises(Paused):
        train(spec(teacher, tmp_path), paused)
    step, epoch, epoch_end = paused.checkpoints[-1]
    assert (step, epoch, epoch_end) == ((pause_at, 1, False) if where == "mid_epoch" else (pause_at, 1, True))
    assert paused.phases[-1] == "training"
    resumed = train(spec(teacher, tmp_path), Recorder())
    assert resumed.resumed_from_step == pause_at
    a, b = (load_file(str(r.artifacts[0].path)) for r in (whole, resumed))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert resumed.metrics["val/top1"] == whole.metrics["val/top1"]


def test_the_last_checkpoint_holds_the_exported_student(uninterrupted, tmp_path):
    result, _, work = uninterrupted
    newest = sorted((work / "checkpoints").glob("ckpt-*.pt"))[-1]
    extracted = write_checkpoint_student(newest, tmp_path / "student.safetensors")
    exported = result.artifacts[0].path
    a, b = load_file(str(exported)), load_file(str(extracted))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    with safe_open(str(exported), "pt") as e, safe_open(str(extracted), "pt") as x:
        assert {**e.metadata(), "checkpoint_step": newest.stem.removeprefix("ckpt-").lstrip("0")} == x.metadata()
    model = load_student_safetensors(extracted)
    assert model(torch.rand(2, *INPUT)).shape == (2, 10)
