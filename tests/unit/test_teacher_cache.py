"""Teacher-output reuse changes nothing the student trains on, stores logits as exactly as the loss needs, and says when it is off."""

import shutil

import pytest
import torch
from factories import make_teacher, save_teacher
from safetensors.torch import load_file
from torch import nn

from kdcore.data import load_split
from kdcore.data.images import ImageSet
from kdcore.data.loader import BatchPlan, TrainingBatches
from kdcore.errors import Cancelled
from kdcore.events import TrainCallbacks
from kdcore.methods import get_method
from kdcore.spec import DatasetSource, JobSpec
from kdcore.teacher_cache import STORE_MAX_BYTES_ENV, TOP_K, LogitCodec, TeacherOutputCache, cache_for_run, choose_codec
from kdcore.training import train

CPU = torch.device("cpu")
INPUT = (3, 16, 16)


class RecordingTeacher(nn.Module):
    """A real teacher that counts and keeps the inputs it is run on."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        self.source = teacher.source
        self.seen: list[torch.Tensor] = []

    @property
    def count(self) -> int:
        return sum(len(x) for x in self.seen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.teacher(x)


@pytest.fixture(scope="module")
def data() -> ImageSet:
    full = load_split(DatasetSource(builtin="digits"), "val", INPUT)
    return ImageSet(full.images[:96], full.labels[:96], full.classes)


def _batches(data: ImageSet, seed: int = 0, augment: bool = True, plan: BatchPlan | None = None) -> TrainingBatches:
    return TrainingBatches(data, plan or BatchPlan(data.labels, 16, seed), CPU, augment=augment)


def _cache(data: ImageSet, batches: TrainingBatches, recipe: str = "flip_crop", store=None, codec: LogitCodec | None = None) -> TeacherOutputCache:
    return TeacherOutputCache(data, batches, recipe, 1, codec or LogitCodec(data.num_classes), 1.0, CPU, store)


def _served(cache: TeacherOutputCache, teacher: nn.Module, batches: TrainingBatches, epochs: range) -> list[torch.Tensor]:
    return [cache.logits(0, teacher, batch) for epoch in epochs for batch in batches.epoch(epoch)]


def _fp16_bound(logits: torch.Tensor) -> torch.Tensor:
    """Largest error fp16 storage of the offsets from each row's maximum may add (half an fp16 ulp of the offset)."""
    offsets = (logits - logits.max(dim=1, keepdim=True).values).abs()
    return offsets * 2.0**-11 + 1e-6


def test_full_codec_keeps_every_logit_to_fp16_of_its_distance_from_the_largest():
    codec, logits = LogitCodec(10), torch.randn(5, 10) * 8 + 20
    decoded = codec.decode(codec.encode(logits))
    peak = logits.max(dim=1, keepdim=True).values
    torch.testing.assert_close(decoded, (logits - peak).half().float() + peak, rtol=0, atol=0)
    assert torch.equal(decoded.max(dim=1).values, logits.max(dim=1).values)


def test_top_k_codec_keeps_top_probabilities_and_spreads_the_rest():
    codec, logits = LogitCodec(1000, TOP_K), torch.randn(4, 1000) * 3
    decoded = codec.decode(codec.encode(logits))
    p, q = logits.softmax(1), decoded.softmax(1)
    top = logits.topk(TOP_K, dim=1).indices
    torch.testing.assert_close(q.gather(1, top), p.gather(1, top), rtol=2e-3, atol=1e-6)
    rest = q.scatter(1, top, float("nan"))
    assert torch.allclose(rest.nanmean(1), (1 - p.gather(1, top).sum(1)) / (1000 - TOP_K), rtol=1e-2)
    assert torch.equal(decoded.argmax(1), logits.argmax(1))


class SoftmaxOnlyReader:
    """Stands for a method that declares its losses read teacher logits only as softmax(z/τ)."""

    teacher_softmax_only = True


@pytest.mark.parametrize(
    ("method", "hparams", "classes", "top_k"),
    [
        (SoftmaxOnlyReader, {"temperature": 1.0}, 1000, TOP_K),
        (SoftmaxOnlyReader, {"temperature": 1.0}, 100, None),
        (SoftmaxOnlyReader, {"temperature": 4.0}, 1000, None),
        (SoftmaxOnlyReader, {"temperature": "curriculum"}, 1000, None),
        (SoftmaxOnlyReader, {"temperature": 1.0, "logit_standardization": True}, 1000, None),
        (SoftmaxOnlyReader, {}, 1000, None),
        ("kd", {"temperature": 1.0}, 1000, None),
        ("meal_v2", {}, 1000, None),
        ("ctkd", {}, 1000, None),
    ],
)
def test_top_k_only_for_a_declared_softmax_reader_at_temperature_one(method, hparams, classes, top_k):
    if isinstance(method, str):
        method = get_method(method)
        hparams = method.Hyperparams(**hparams)
    else:
        hparams = type("H", (), hparams)()
    assert choose_codec(method, hparams, classes).top_k == top_k


def test_cached_run_sees_the_same_batches_and_teacher_targets_as_an_uncached_one(tmp_path, data):
    """``teacher_cache`` auto and off: identical images, the teacher's inputs are the student's, targets equal to fp16 storage."""
    teacher = make_teacher(tmp_path, input_size=INPUT)
    recording = RecordingTeacher(teacher)
    cached, uncached = _batches(data, seed=5), _batches(data, seed=5)
    cache = _cache(data, cached)
    for epoch in range(3):
        for with_cache, without in zip(cached.epoch(epoch), uncached.epoch(epoch), strict=True):
            target = cache.logits(0, recording, with_cache)
            torch.testing.assert_close(with_cache.images, without.images, rtol=0, atol=0)
            assert torch.equal(with_cache.indices, without.indices) and torch.equal(with_cache.augment.dx, without.augment.dx)
            with torch.inference_mode():
                fresh = teacher(without.images)
            assert ((target - fresh).abs() <= _fp16_bound(fresh)).all()
    shown = torch.cat(recording.seen)
    assert len(shown) == 3 * len(data) and cache.teacher_samples == len(shown)
    metrics = cache.metrics()
    assert metrics["teacher_cache/reuse"] == 1.0 and metrics["teacher_cache/from_store"] == 0.0
    assert 0.0 <= metrics["teacher_cache/kl_error"] < 1e-5 and metrics["teacher_cache/max_logit_error"] < 1e-2


def test_without_augmentation_one_slot_serves_every_epoch(tmp_path, data):
    teacher = RecordingTeacher(make_teacher(tmp_path, input_size=INPUT))
    batches = _batches(data, augment=False)
    cache = _cache(data, batches, recipe="none")
    _served(cache, teacher, batches, range(3))
    assert teacher.count == len(data) and cache.served_rows == 3 * 6 * 16


def test_a_later_job_loads_every_epoch_bit_for_bit_and_runs_no_teacher(tmp_path, data):
    store = tmp_path / "store"
    first_teacher = RecordingTeacher(make_teacher(tmp_path, input_size=INPUT))
    first = _served(_cache(data, _batches(data, 2), store=store), first_teacher, _batches(data, 2), range(2))
    assert len(list(store.glob("*.safetensors"))) == 2
    again = RecordingTeacher(make_teacher(tmp_path, input_size=INPUT))
    cache = _cache(data, _batches(data, 2), store=store)
    second = _served(cache, again, _batches(data, 2), range(2))
    assert again.count == 0 and cache.metrics()["teacher_cache/from_store"] == 1.0
    assert cache.metrics()["teacher_cache/kl_error"] < 1e-5
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _served(_cache(data, _batches(data, 3), store=store), again, _batches(data, 3), range(1))
    assert again.count == len(data), "another seed draws other views, so nothing may be loaded"


def test_a_different_teacher_file_does_not_reuse_the_store(tmp_path, data):
    store = tmp_path / "store"
    _served(
        _cache(data, _batches(data, augment=False), "none", store), make_teacher(tmp_path, input_size=INPUT, seed=0), _batches(data, augment=False), range(1)
    )
    (tmp_path / "other").mkdir()
    other = RecordingTeacher(make_teacher(tmp_path / "other", input_size=INPUT, seed=1))
    _served(_cache(data, _batches(data, augment=False), "none", store), other, _batches(data, augment=False), range(1))
    assert other.count == len(data) and len(list(store.glob("*.safetensors"))) == 2


class RepeatingPlan(BatchPlan):
    """Shows every sample twice an epoch (two different views), as a class-balanced sampler may."""

    def batches(self, epoch: int) -> list[torch.Tensor]:
        return [torch.cat([b, b]) for b in super().batches(epoch)]


def test_an_epoch_that_shows_a_sample_twice_is_served_fresh(tmp_path, data):
    teacher = make_teacher(tmp_path, input_size=INPUT)
    batches = _batches(data, plan=RepeatingPlan(data.labels, 8, 0))
    cache = _cache(data, batches)
    for batch in batches.epoch(0):
        with torch.inference_mode():
            fresh = teacher(batch.images)
        torch.testing.assert_close(cache.logits(0, teacher, batch), fresh, rtol=0, atol=0)
    assert cache.served_rows == 0


def _spec(teacher, work, epochs: int = 2, hyperparams: dict | None = None) -> JobSpec:
    config = {"epochs": epochs, "batch_size": 128, "seed": 3, "input_size": list(INPUT), "augment": "flip_crop", "checkpoint_every_steps": 7}
    return JobSpec(
        method="kd",
        teachers=[teacher],
        student={"arch": "cifar_resnet8"},
        dataset={"builtin": "digits"},
        hyperparams=hyperparams or {},
        training=config,
        export=["safetensors"],
        work_dir=work,
    )


def test_reuse_is_off_and_says_so_for_an_unstored_teacher_or_an_oversized_store(tmp_path, data, monkeypatch):
    batches = _batches(data)
    unstored = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    spec = _spec(save_teacher(tmp_path, input_size=INPUT), tmp_path / "job")
    cache = cache_for_run(spec, get_method("kd"), get_method("kd").Hyperparams(), data, batches, [unstored], CPU)
    assert not cache.enabled and "cannot be stored" in cache.reason and cache.metrics() == {"teacher_cache/reuse": 0.0}
    batch = next(batches.epoch(0))
    torch.testing.assert_close(cache.logits(0, unstored, batch), unstored(batch.images), rtol=0, atol=0)
    monkeypatch.setenv(STORE_MAX_BYTES_ENV, "1000")
    stored = make_teacher(tmp_path, input_size=INPUT)
    assert "above" in cache_for_run(spec, get_method("kd"), get_method("kd").Hyperparams(), data, batches, [stored], CPU).reason


class Recorder(TrainCallbacks):
    def __init__(self, cancel_at: int | None = None) -> None:
        self.points, self.notices, self.reached, self.cancel_at = [], [], 0, cancel_at

    def on_metrics(self, points) -> None:
        self.points += points

    def on_notice(self, name: str, message: str) -> None:
        self.notices.append((name, message))

    def on_progress(self, progress) -> None:
        self.reached = progress.step

    def should_cancel(self) -> bool:
        return self.cancel_at is not None and self.reached >= self.cancel_at

    def last(self, name: str) -> float:
        return [p.value for p in self.points if p.name == name][-1]


def test_a_second_job_with_the_same_teacher_and_seed_loads_every_teacher_output(tmp_path, monkeypatch):
    monkeypatch.setenv("KDCORE_TEACHER_STORE", str(tmp_path / "shared-store"))
    teacher = save_teacher(tmp_path, input_size=INPUT)
    first, second = Recorder(), Recorder()
    train(_spec(teacher, tmp_path / "a"), first)
    train(_spec(teacher, tmp_path / "b", hyperparams={"temperature": 2.0}), second)
    assert first.last("teacher_cache/from_store") == 0.0 and second.last("teacher_cache/from_store") == 1.0
    assert second.last("teacher_cache/reuse") == 1.0 and second.last("teacher_cache/kl_error") < 1e-5
    assert [n for n, _ in first.notices] == [n for n, _ in second.notices] == ["estimate"]  # reuse never switched itself off


def test_resume_is_exact_even_when_the_store_is_gone(tmp_path):
    teacher = save_teacher(tmp_path, input_size=INPUT)
    uninterrupted = train(_spec(teacher, tmp_path / "a", epochs=6))
    with pytest.raises(Cancelled):
        train(_spec(teacher, tmp_path / "b", epochs=6), Recorder(cancel_at=50))
    shutil.rmtree(tmp_path / "b" / "teacher-outputs")
    resumed = train(_spec(teacher, tmp_path / "b", epochs=6))
    assert resumed.resumed_from_step == 49
    a, b = (load_file(str(r.artifacts[0].path)) for r in (uninterrupted, resumed))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
