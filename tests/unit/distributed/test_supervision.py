"""The launcher stands over every rank: one rank killed ends them all and the run resumes; a cancel ends them all;
a pause stops them all at the next checkpoint, from which the run resumes."""

import os
import signal
import time

import pytest
from factories import save_teacher
from processes import running
from ranks_job import INPUT, kd_spec, rank_pids

from kdcore.distributed.launch import launch
from kdcore.errors import Cancelled, Paused, RankFailed
from kdcore.events import TrainCallbacks

GONE_WITHIN_S = 10.0


class KillRankOne(TrainCallbacks):
    """SIGKILLs rank 1 once the first checkpoint is written, so the run has something to resume from."""

    def __init__(self, spec) -> None:
        self.spec, self.killed_at, self.checkpoints = spec, None, 0

    def on_checkpoint(self, path, global_step, epoch, epoch_end) -> None:
        self.checkpoints += 1
        if self.killed_at is None:
            os.kill(rank_pids(self.spec)[1], signal.SIGKILL)
            self.killed_at = time.monotonic()


class CancelAfterProgress(TrainCallbacks):
    def __init__(self) -> None:
        self.seen = False

    def on_progress(self, progress) -> None:
        self.seen = True

    def should_cancel(self) -> bool:
        return self.seen


class PauseAfterProgress(CancelAfterProgress):
    def __init__(self) -> None:
        super().__init__()
        self.checkpoints: list[int] = []

    def on_checkpoint(self, path, global_step, epoch, epoch_end) -> None:
        self.checkpoints.append(global_step)

    def should_cancel(self) -> bool:
        return False

    def should_pause(self) -> bool:
        return self.seen


def assert_all_gone(spec) -> None:
    pids = rank_pids(spec)
    assert len(pids) == 2
    deadline = time.monotonic() + GONE_WITHIN_S
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(pid) for pid in pids), "a rank outlived its job"


@pytest.fixture
def teacher(tmp_path):
    return save_teacher(tmp_path, input_size=INPUT)


def test_a_killed_rank_ends_every_rank_and_the_job_resumes_from_its_checkpoint_at_another_world_size(tmp_path, teacher):
    spec = kd_spec(teacher, tmp_path / "job", 2, epochs=2, checkpoint_every_steps=3)
    killer = KillRankOne(spec)
    with pytest.raises(RankFailed, match="a rank of the job died"):
        launch(spec, killer)
    assert time.monotonic() - killer.killed_at < GONE_WITHIN_S
    assert_all_gone(spec)
    on_one_rank = spec.model_copy(update={"training": spec.training.model_copy(update={"devices": 1})})
    resumed = launch(on_one_rank)  # a checkpoint of 2 ranks resumes on 1: positions count global batches
    assert resumed.resumed_from_step >= 3
    assert resumed.metrics["job/world_size"] == 1.0
    assert resumed.metrics["val/top1"] > 0


def test_cancel_ends_every_rank_within_seconds(tmp_path, teacher):
    spec = kd_spec(teacher, tmp_path / "job", 2, epochs=3)
    asked = time.monotonic()
    with pytest.raises(Cancelled):
        launch(spec, CancelAfterProgress())
    assert_all_gone(spec)
    assert time.monotonic() - asked < 120


def test_pause_stops_every_rank_at_the_next_checkpoint_and_the_run_resumes_there(tmp_path, teacher):
    spec = kd_spec(teacher, tmp_path / "job", 2, epochs=2, checkpoint_every_steps=4)
    pauser = PauseAfterProgress()
    with pytest.raises(Paused, match=r"paused .*at step \d+$") as paused:
        launch(spec, pauser)
    step = int(str(paused.value).rsplit(" ", 1)[1])
    assert step == pauser.checkpoints[-1] and step < 2 * 11, "the ranks stopped together at their first checkpoint after the request"
    assert_all_gone(spec)
    resumed = launch(spec)
    assert resumed.resumed_from_step == step
