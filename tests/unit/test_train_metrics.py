"""A step's named losses become the reported metric names; a non-finite mean stops the run."""

import math

import pytest
import torch

from kdcore.errors import NanLoss
from kdcore.training.metrics import RunningLosses, check_finite, training_points


def step_output(loss: float, kd: float, temperature: float) -> dict[str, torch.Tensor]:
    return {
        "loss": torch.tensor(loss),
        "output": torch.zeros(2, 3),
        "loss/kd": torch.tensor(kd),
        "signal/temperature": torch.tensor(temperature),
    }


def test_running_means_cover_the_steps_since_the_last_read_and_skip_the_output():
    running = RunningLosses()
    running.add(step_output(1.0, 0.5, 4.0))
    running.add(step_output(3.0, 1.5, 6.0))
    assert running.read() == {"loss": 2.0, "loss/kd": 1.0, "signal/temperature": 5.0}
    running.add(step_output(5.0, 2.0, 1.0))
    assert running.read()["loss"] == 5.0


def test_reported_names():
    points = training_points({"loss": 2.0, "loss/kd": 1.0, "signal/temperature": 5.0}, 0.05, {"grl_lambda": 0.5}, global_step=7, epoch=1)
    assert [(p.name, p.value) for p in points] == [
        ("train/loss", 2.0),
        ("train/loss/kd", 1.0),
        ("method/temperature", 5.0),
        ("train/lr", 0.05),
        ("method/grl_lambda", 0.5),
    ]
    assert {(p.step, p.epoch) for p in points} == {(7, 1)}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_mean_raises_nan_loss_with_the_step(bad):
    check_finite({"loss": 1.0}, 10, 0)
    with pytest.raises(NanLoss, match="near step 10 \\(epoch 1\\)"):
        check_finite({"loss": 1.0, "loss/kd": bad}, 10, 0)
