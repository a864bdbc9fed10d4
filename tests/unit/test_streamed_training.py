"""Jobs on the streamed path: the same weights as in memory where the batches agree, exact resume, the path recorded."""

from __future__ import annotations

import pytest
import torch
from factories import save_teacher
from image_trees import digits_tree
from safetensors.torch import load_file

from kdcore.data.shards import write_shards
from kdcore.errors import BadSpec, Cancelled
from kdcore.events import TrainCallbacks
from kdcore.spec import JobSpec
from kdcore.training import train

INPUT = (3, 12, 12)


class Notices(TrainCallbacks):
    """Records notices; cancels at the first check after ``stop_at`` steps were reported."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.notices: dict[str, str] = {}
        self.stop_at, self.seen = stop_at, 0

    def on_notice(self, name: str, message: str) -> None:
        self.notices[name] = message

    def on_progress(self, progress) -> None:
        self.seen = progress.step

    def should_cancel(self) -> bool:
        return self.stop_at is not None and self.seen >= self.stop_at


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return digits_tree(tmp_path_factory.mktemp("tree"), size=12, per_class=16)


def _spec(work, dataset: dict, teachers=(), **training) -> JobSpec:
    return JobSpec(
        method="kd" if teachers else "supervised",
        teachers=list(teachers),
        student={"arch": "cifar_resnet8"},
        dataset=dataset,
        training={"epochs": 2, "batch_size": 16, "seed": 4, "input_size": list(INPUT), "checkpoint_every_steps": 4, "log_every_steps": 2, **training},
        export=["safetensors"],
        work_dir=work,
    )


def _weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(next(a.path for a in result.artifacts if a.kind == "student_safetensors")))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_streaming_an_imagefolder_trains_the_weights_the_in_memory_path_trains(tree, tmp_path):
    memory = train(_spec(tmp_path / "m", {"root": tree}, augment="none", data_pipeline="memory"))
    streamed = train(_spec(tmp_path / "s", {"root": tree}, augment="none", data_pipeline="stream", loader_workers=1))
    assert memory.metrics["data/streamed"] == 0.0 and streamed.metrics["data/streamed"] == 1.0
    _assert_same(_weights(memory), _weights(streamed))
    assert streamed.metrics["val/top1"] == memory.metrics["val/top1"]


def test_auto_streams_only_above_the_memory_budget(tree, tmp_path):
    decoded = sum(1 for _ in tree.rglob("*.png")) * 3 * 12 * 12
    fits = train(_spec(tmp_path / "a", {"root": tree, "memory_max_bytes": decoded}, epochs=1, augment="none"))
    over = train(_spec(tmp_path / "b", {"root": tree, "memory_max_bytes": decoded - 1}, epochs=1, augment="none", loader_workers=0))
    assert fits.metrics["data/streamed"] == 0.0 and over.metrics["data/streamed"] == 1.0


def test_a_sharded_streamed_job_resumes_exactly_and_says_teacher_reuse_is_off(tree, tmp_path):
    index = write_shards(tree, tmp_path / "shards", shard_bytes=8_000)
    assert index.shard_count() >= 4
    source = {"index": tmp_path / "shards" / "index.json"}
    teacher = save_teacher(tmp_path, input_size=INPUT)
    told = Notices()
    uninterrupted = train(_spec(tmp_path / "a", source, [teacher], augment="cifar", data_pipeline="stream", loader_workers=2), told)
    assert "streamed path" in told.notices["teacher_cache"]
    with pytest.raises(Cancelled):
        train(_spec(tmp_path / "b", source, [teacher], augment="cifar", data_pipeline="stream", loader_workers=2), Notices(stop_at=6))
    resumed = train(_spec(tmp_path / "b", source, [teacher], augment="cifar", data_pipeline="stream", loader_workers=1))
    assert resumed.resumed_from_step == 4 and resumed.metrics["data/streamed"] == 1.0
    _assert_same(_weights(uninterrupted), _weights(resumed))


def test_a_method_with_its_own_batches_is_refused_on_streamed_shards_and_runs_with_the_shards_in_memory(tree, tmp_path):
    write_shards(tree, tmp_path / "shards", shard_bytes=8_000)
    spec = _spec(tmp_path / "w", {"index": tmp_path / "shards" / "index.json"}, data_pipeline="stream").model_copy(update={"method": "bake"})
    with pytest.raises(BadSpec, match="sharded streaming"):
        train(spec)
    held = train(spec.model_copy(update={"training": spec.training.model_copy(update={"data_pipeline": "memory", "epochs": 1})}))
    assert held.metrics["data/streamed"] == 0.0 and held.metrics["val/top1"] > 0.1
    with pytest.raises(BadSpec, match="always held in memory"):
        train(_spec(tmp_path / "d", {"builtin": "digits"}, data_pipeline="stream"))
