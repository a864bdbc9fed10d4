"""Every job states its estimated duration in its first events and in its metrics, from the cost model."""

import torch
from factories import save_teacher

from kdcore.estimate import CPU_SECONDS_PER_FORWARD_FLOP, arch_flops, estimate_job, module_flops
from kdcore.events import TrainCallbacks
from kdcore.models import create_model
from kdcore.spec import JobSpec
from kdcore.training import train

INPUT = (3, 16, 16)


class Recorder(TrainCallbacks):
    def __init__(self) -> None:
        self.events: list[tuple[str, str | float]] = []

    def on_notice(self, name: str, message: str) -> None:
        self.events.append((name, message))

    def on_metrics(self, points) -> None:
        self.events += [(p.name, p.value) for p in points]

    def on_phase(self, name: str) -> None:
        self.events.append(("phase", name))


def test_a_data_free_job_reports_its_estimate_before_training_and_in_its_metrics(tmp_path):
    teacher = save_teacher(tmp_path)
    spec = JobSpec(
        method="deepinversion",
        teachers=[teacher],
        student={"arch": "cifar_resnet8"},
        hyperparams={"inversion_iterations": 2, "pool_size": 16, "jitter": 2},
        training={"epochs": 1, "batch_size": 8, "input_size": list(INPUT), "steps_per_epoch": 3},
        export=["safetensors"],
        work_dir=tmp_path / "run",
    )
    recorder = Recorder()
    result = train(spec, recorder)
    names = [name for name, _ in recorder.events]
    assert names.index("estimate") < names.index("job/estimated_seconds") < recorder.events.index(("phase", "training"))
    notice = dict(recorder.events)["estimate"]
    assert "3 steps" in notice and "32 image-iterations of synthesis" in notice  # 2 batches of 8 × 2 iterations
    seconds = result.metrics["job/estimated_seconds"]
    assert seconds == dict(recorder.events)["job/estimated_seconds"] > 0


def test_the_estimate_is_flops_times_images_at_the_measured_rate():
    student = arch_flops("cifar_resnet8", 10, INPUT)
    teacher = arch_flops("cifar_resnet20", 10, INPUT)
    assert teacher > student > 0
    estimate = estimate_job("kd", {}, 2, 64, student, [teacher], 640)
    assert (estimate.steps, estimate.training_images, estimate.synthesis_images) == (20, 1280, 0)
    assert estimate.seconds == 1280 * (3 * student + teacher) * CPU_SECONDS_PER_FORWARD_FLOP


def test_counting_flops_leaves_a_training_student_as_it_was():
    """resnet10t at 32 px ends on a 1×1 map: in training mode its BatchNorm refuses one image, and any forward would move its statistics."""
    student = create_model("resnet10t", num_classes=10).train()
    before = {name: buffer.clone() for name, buffer in student.named_buffers()}
    assert module_flops(student, (3, 32, 32)) > 0
    assert student.training and all(torch.equal(buffer, before[name]) for name, buffer in student.named_buffers())
