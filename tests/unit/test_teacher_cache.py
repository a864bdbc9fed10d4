"""Teacher-output reuse: the teacher runs once per (sample, slot), values match fresh ones, resume stays exact."""

import shutil

import pytest
import torch
from factories import make_teacher, save_teacher
from safetensors.torch import load_file
from torch import nn

from kdcore.data import load_split
from kdcore.data.augment import VariantPool
from kdcore.data.images import ImageSet
from kdcore.data.loader import BatchPlan, TrainingBatches
from kdcore.errors import Cancelled
from kdcore.events import TrainCallbacks
from kdcore.spec import DatasetSource, JobSpec
from kdcore.teacher_cache import LogitCodec, TeacherOutputCache
from kdcore.train import train

CPU = torch.device("cpu")
INPUT = (3, 16, 16)


class CountingTeacher(nn.Module):
    """A real teacher that counts the inputs it is run on."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        self.source = teacher.source
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.teacher(x)


@pytest.fixture(scope="module")
def data() -> ImageSet:
    full = load_split(DatasetSource(builtin="digits"), "val", INPUT)
    return ImageSet(full.images[:96], full.labels[:96], full.classes)


def _epochs(cache: TeacherOutputCache, teacher: nn.Module, source: TrainingBatches, epochs: range) -> list[torch.Tensor]:
    return [cache.logits(0, teacher, batch) for epoch in epochs for batch in source.epoch(epoch)]


def test_full_codec_keeps_every_logit_to_fp16_of_its_distance_from_the_largest():
    codec, logits = LogitCodec(10), torch.randn(5, 10) * 8 + 20
    decoded = codec.decode(codec.encode(logits))
    peak = logits.max(dim=1, keepdim=True).values
    torch.testing.assert_close(decoded, (logits - peak).half().float() + peak, rtol=0, atol=0)
    assert torch.equal(decoded.max(dim=1).values, logits.max(dim=1).values)
    torch.testing.assert_close(decoded.softmax(1), logits.softmax(1), rtol=0, atol=1e-3)


def test_top_k_codec_keeps_top_probabilities_and_spreads_the_rest():
    codec, logits = LogitCodec(1000), torch.randn(4, 1000) * 3
    decoded = codec.decode(codec.encode(logits))
    p, q = logits.softmax(1), decoded.softmax(1)
    top = logits.topk(codec.top_k, dim=1).indices
    torch.testing.assert_close(q.gather(1, top), p.gather(1, top), rtol=2e-3, atol=1e-6)
    rest = q.scatter(1, top, float("nan"))
    assert torch.allclose(rest.nanmean(1), (1 - p.gather(1, top).sum(1)) / (1000 - codec.top_k), rtol=1e-2)
    assert torch.equal(decoded.argmax(1), logits.argmax(1))


def test_teacher_runs_once_per_sample_and_slot_then_every_later_epoch_hits(tmp_path, data):
    teacher = CountingTeacher(make_teacher(tmp_path, input_size=INPUT))
    pool = VariantPool(len(data), 16, 16, seed=0, variants=4)
    source = TrainingBatches(data, BatchPlan(data.labels, 16, 0), CPU, augment=True, pool=pool)
    cache = TeacherOutputCache(data, pool, 1, CPU)
    _epochs(cache, teacher, source, range(1))
    assert teacher.seen == len(data)
    _epochs(cache, teacher, source, range(1, 4))
    assert teacher.seen == 4 * len(data)
    later = _epochs(cache, teacher, source, range(4, 9))
    assert teacher.seen == 4 * len(data) and cache.teacher_samples == teacher.seen
    assert cache.served_rows == 9 * len(data) and len(later) == 5 * 6


def test_stored_values_equal_fresh_teacher_outputs(tmp_path, data):
    teacher = make_teacher(tmp_path, input_size=INPUT)
    pool = VariantPool(len(data), 16, 16, seed=1, variants=4)
    source = TrainingBatches(data, BatchPlan(data.labels, 16, 1), CPU, augment=True, pool=pool)
    cache = TeacherOutputCache(data, pool, 1, CPU)
    for epoch in range(6):
        for batch in source.epoch(epoch):
            with torch.inference_mode():
                fresh = teacher(batch.images)
            torch.testing.assert_close(cache.logits(0, teacher, batch), fresh, rtol=2e-3, atol=2e-3)


def test_without_augmentation_one_slot_serves_every_epoch(tmp_path, data):
    teacher = CountingTeacher(make_teacher(tmp_path, input_size=INPUT))
    source = TrainingBatches(data, BatchPlan(data.labels, 16, 0), CPU, augment=False)
    cache = TeacherOutputCache(data, None, 1, CPU)
    _epochs(cache, teacher, source, range(3))
    assert teacher.seen == len(data)


def test_random_augmentation_is_never_served_from_the_table(tmp_path, data):
    teacher = CountingTeacher(make_teacher(tmp_path, input_size=INPUT))
    source = TrainingBatches(data, BatchPlan(data.labels, 16, 0), CPU, augment=True)
    _epochs(TeacherOutputCache(data, None, 1, CPU), teacher, source, range(2))
    assert teacher.seen == 2 * len(data)


def test_a_later_job_loads_the_stored_slots_bit_for_bit(tmp_path, data):
    store = tmp_path / "store"
    pool = VariantPool(len(data), 16, 16, seed=2, variants=2)
    source = TrainingBatches(data, BatchPlan(data.labels, 16, 2), CPU, augment=True, pool=pool)
    first_teacher = CountingTeacher(make_teacher(tmp_path, input_size=INPUT))
    first = _epochs(TeacherOutputCache(data, pool, 1, CPU, store), first_teacher, source, range(2))
    assert len(list(store.glob("*.safetensors"))) == 2
    again = CountingTeacher(make_teacher(tmp_path, input_size=INPUT))
    cache = TeacherOutputCache(data, pool, 1, CPU, store)
    second = _epochs(cache, again, source, range(2))
    assert again.seen == 0 and cache.loaded_slots == 2
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other_seed = VariantPool(len(data), 16, 16, seed=3, variants=2)
    _epochs(TeacherOutputCache(data, other_seed, 1, CPU, store), again, TrainingBatches(data, BatchPlan(data.labels, 16, 3), CPU, True, other_seed), range(1))
    assert again.seen == len(data)


def test_a_different_teacher_file_does_not_reuse_the_store(tmp_path, data):
    store = tmp_path / "store"
    source = TrainingBatches(data, BatchPlan(data.labels, 16, 0), CPU, augment=False)
    _epochs(TeacherOutputCache(data, None, 1, CPU, store), make_teacher(tmp_path, input_size=INPUT, seed=0), source, range(1))
    (tmp_path / "other").mkdir()
    other = CountingTeacher(make_teacher(tmp_path / "other", input_size=INPUT, seed=1))
    _epochs(TeacherOutputCache(data, None, 1, CPU, store), other, source, range(1))
    assert other.seen == len(data) and len(list(store.glob("*.safetensors"))) == 2


class CancelAtStep(TrainCallbacks):
    """Asks to stop once progress reaches ``step`` (the trainer checks right after reporting it)."""

    def __init__(self, step: int) -> None:
        self.reached, self.step = 0, step

    def on_progress(self, progress) -> None:
        self.reached = progress.step

    def should_cancel(self) -> bool:
        return self.reached >= self.step


def _kd_spec(teacher, work) -> JobSpec:
    training = {"epochs": 6, "batch_size": 128, "seed": 3, "input_size": list(INPUT), "augment": "flip_crop", "checkpoint_every_steps": 7}
    return JobSpec(
        method="kd",
        teachers=[teacher],
        student={"arch": "cifar_resnet8"},
        dataset={"builtin": "digits"},
        training=training,
        export=["safetensors"],
        work_dir=work,
    )


def test_resume_with_variants_is_exact_even_when_the_store_is_gone(tmp_path):
    teacher = save_teacher(tmp_path, input_size=INPUT)
    uninterrupted = train(_kd_spec(teacher, tmp_path / "a"))
    with pytest.raises(Cancelled):
        train(_kd_spec(teacher, tmp_path / "b"), CancelAtStep(50))
    shutil.rmtree(tmp_path / "b" / "teacher-outputs")
    resumed = train(_kd_spec(teacher, tmp_path / "b"))
    assert resumed.resumed_from_step == 49
    a, b = (load_file(str(r.artifacts[0].path)) for r in (uninterrupted, resumed))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
