import pytest
import torch
from distiller_steps import training_step
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.losses import at_loss
from kdcore.methods import StepInfo, get_method

STEP = StepInfo(0, 0, 0, 4, 2)


def _distiller(tmp_path, arch="cifar_resnet8", input_size=(3, 16, 16)):
    method = get_method("at")
    teacher = make_teacher(tmp_path, "cifar_resnet20")
    return method(make_student(arch, input_size=input_size), [teacher], method.Hyperparams(), make_context(input_size=input_size)), teacher


def test_at_defaults_are_the_papers():
    method = get_method("at")
    hp = method.Hyperparams()
    assert (hp.p, hp.beta, hp.ce_weight) == (2, 1000.0, 1.0)
    assert method.needs_teacher_features and method.teacher_count == (1, 1)


def test_at_step_trains_student_only_and_sums_every_stage(tmp_path):
    distiller, teacher = _distiller(tmp_path)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller.train()
    batch = make_batch()
    out = distiller(batch, STEP)
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in distiller.student.model.stages.parameters())
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/at"])
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, before[key])
    with torch.no_grad():
        _, fs = distiller._student_features[0](batch.images)
        _, ft = distiller._teacher_features[0](batch.images)
    assert len(fs) == 3
    expected = 1000.0 * sum(at_loss(s, t) for s, t in zip(fs, ft, strict=True))
    torch.testing.assert_close(out["loss/at"], expected, rtol=1e-4, atol=1e-6)


def test_at_works_with_a_timm_student_at_another_resolution(tmp_path):
    pytest.importorskip("timm")
    distiller, _ = _distiller(tmp_path, "resnet10t", (3, 32, 32))
    out = training_step(distiller, make_batch(4, (3, 32, 32)), STEP)
    assert torch.isfinite(out["loss"]) and out["loss/at"] > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())


def test_at_loss_matches_repdistillers_formula_including_pooling():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 4, 4, generator=generator)
    teacher = torch.randn(2, 5, 2, 2, generator=generator)

    def attention(f):
        a = f.pow(2).mean(1).view(f.size(0), -1)
        return a / a.norm(dim=1, keepdim=True)

    pooled = torch.nn.functional.adaptive_avg_pool2d(student, (2, 2))
    expected = (attention(pooled) - attention(teacher)).pow(2).mean()
    torch.testing.assert_close(at_loss(student, teacher, 2), expected)
