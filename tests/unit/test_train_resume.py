"""An interrupted run resumes from its checkpoint and ends bit for bit where an uninterrupted one ends."""

import pytest
import torch
from factories import save_teacher
from safetensors.torch import load_file

from kdcore.errors import Cancelled
from kdcore.events import TrainCallbacks
from kdcore.spec import JobSpec
from kdcore.training import train

INPUT = (3, 16, 16)
CASES = {
    "dkd": {"temperature": "curriculum"},  # a learned temperature and its gradient-reversal schedule
    "meal_v2": {},  # two teachers, a discriminator in its own optimizer group
    "datafree_generative": {"steps_per_epoch": 5},  # the generator's own Adam and noise seed (method_state)
}


class Interrupt(TrainCallbacks):
    """Cancels the run at the first check after ``step`` steps were reported: work after the last checkpoint is lost."""

    def __init__(self, step: int) -> None:
        self.step, self.seen = step, 0

    def on_progress(self, progress) -> None:
        self.seen = progress.step

    def should_cancel(self) -> bool:
        return self.seen >= self.step


def spec(method: str, teachers, work) -> JobSpec:
    data_free = method == "datafree_generative"
    return JobSpec(
        method=method,
        teachers=teachers[: 2 if method == "meal_v2" else 1],
        student={"arch": "cifar_resnet8"},
        dataset=None if data_free else {"builtin": "digits"},
        hyperparams=CASES[method],
        training={"epochs": 2, "batch_size": 32 if data_free else 256, "seed": 5, "input_size": list(INPUT), "checkpoint_every_steps": 3, "log_every_steps": 2},
        export=["safetensors"],
        work_dir=work,
    )


def history(work) -> list:
    """The reported points (name, step, epoch, value) as the last checkpoint holds them."""
    latest = sorted((work / "checkpoints").glob("ckpt-*.pt"))[-1]
    return [tuple(row[:4]) for row in torch.load(latest, weights_only=True)["history"]]


@pytest.mark.parametrize("method", sorted(CASES))
def test_resumed_run_equals_uninterrupted_run(tmp_path, method):
    teachers = [save_teacher(tmp_path, input_size=INPUT, seed=seed) for seed in (0, 1)]
    uninterrupted = train(spec(method, teachers, tmp_path / "a"))
    with pytest.raises(Cancelled):
        train(spec(method, teachers, tmp_path / "b"), Interrupt(5))
    resumed = train(spec(method, teachers, tmp_path / "b"))
    assert resumed.resumed_from_step == 3
    a, b = (load_file(str(r.artifacts[0].path)) for r in (uninterrupted, resumed))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # Running means are not checkpointed: the first report after the resume averages only the steps taken since.
    full, pieced = history(tmp_path / "a"), history(tmp_path / "b")
    assert [row[:3] for row in full] == [row[:3] for row in pieced]
    assert [row for row in full if row[1] <= 3 or row[0].startswith("val/")] == [row for row in pieced if row[1] <= 3 or row[0].startswith("val/")]
    assert resumed.metrics.get("val/top1") == uninterrupted.metrics.get("val/top1")
