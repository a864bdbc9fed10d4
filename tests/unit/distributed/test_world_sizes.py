"""The same ``kd`` job on 1 and 2 ranks (gloo, same seed and global batch) trains the same student with ``sync_bn``.

Each rank takes its half of every global batch; with ``sync_bn`` BatchNorm normalises over both
halves, so what differs is the order of floating-point reductions (DDP's all-reduce, convolutions
over half batches). Under SGD such float differences grow with the steps taken: after 5 steps the
largest one measured here is between 1e-6 and 2e-4 depending on the teacher-output path, hence the
1e-3 tolerance. Without ``sync_bn`` each rank normalises with its own half-batch statistics, the one
expected difference, and the students differ by about 1e-2, which the same check must see; their
top-1 stays within one validation image of the single-process student's.
"""

import torch
from factories import save_teacher
from ranks_job import INPUT, kd_spec
from safetensors.torch import load_file

from kdcore.data.builtin import builtin_info
from kdcore.distributed.launch import launch

TOLERANCE = 1e-3


def student(result) -> dict[str, torch.Tensor]:
    return load_file(str(next(a.path for a in result.artifacts if a.kind == "student_safetensors")))


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in a)


def test_sync_bn_on_two_ranks_trains_the_single_process_student(tmp_path):
    teacher = save_teacher(tmp_path, input_size=INPUT)
    runs = {
        (devices, sync): launch(kd_spec(teacher, tmp_path / f"{devices}-{sync}", devices, sync_bn=sync, batch_size=256))
        for devices, sync in ((1, True), (2, True), (2, False))
    }
    assert [r.metrics["job/world_size"] for r in runs.values()] == [1.0, 2.0, 2.0]
    alone = student(runs[1, True])
    for name, tensor in student(runs[2, True]).items():
        torch.testing.assert_close(tensor, alone[name], rtol=TOLERANCE, atol=TOLERANCE, msg=name)
    assert largest_difference(student(runs[2, False]), alone) > 3 * TOLERANCE
    val_images = builtin_info("digits")["splits"]["val"]
    correct = {key: round(run.metrics["val/top1"] * val_images) for key, run in runs.items()}
    assert correct[2, True] == correct[1, True] and abs(correct[2, False] - correct[1, True]) <= 1, correct
