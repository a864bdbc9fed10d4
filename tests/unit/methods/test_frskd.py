import torch
from distiller_steps import eval_step
from factories import make_batch, make_context, make_student
from torch.nn import functional as F

from kdcore.losses import at_loss, kd_loss
from kdcore.methods import StepInfo, get_method
from kdcore.methods.frskd import SelfTeacher, downsample_to, fuse

STEP = StepInfo(0, 0, 0, 4, 2)


def _distiller(**hparams):
    method = get_method("frskd")
    return method(make_student(), [], method.Hyperparams(**hparams), make_context())


def test_frskd_defaults_are_the_papers():
    method = get_method("frskd")
    hp = method.Hyperparams()
    assert (hp.alpha, hp.beta, hp.temperature, hp.width, hp.depth) == (2.0, 100.0, 4.0, 2, 2)
    assert method.teacher_count == (0, 0)


def test_fast_normalised_fusion_and_same_padded_max_pool():
    a, b = torch.ones(1, 1, 2, 2), 3 * torch.ones(1, 1, 2, 2)
    torch.testing.assert_close(fuse(torch.tensor([1.0, -5.0]), [a, b]), a / (1 + 1e-6))
    torch.testing.assert_close(fuse(torch.tensor([1.0, 1.0]), [a, b]), 2 * a / (1 + 0.5e-6))
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(downsample_to(x, (2, 2)), torch.tensor([[[[10.0, 11.0], [14.0, 15.0]]]]))
    assert downsample_to(torch.rand(1, 1, 8, 8), (3, 3)).shape[-2:] == (3, 3)


def test_self_teacher_refines_each_level_at_its_resolution_with_wider_channels():
    shapes = [(16, 16, 16), (32, 8, 8), (64, 4, 4)]
    teacher = SelfTeacher(shapes, num_classes=10, width=2, depth=2)
    refined, logits = teacher([torch.rand(2, *s) for s in shapes])
    assert [tuple(r.shape[1:]) for r in refined] == [(32, 16, 16), (64, 8, 8), (128, 4, 4)]
    assert logits.shape == (2, 10)
    assert all((r >= 0).all() for r in refined)


def test_frskd_step_trains_student_and_self_teacher_with_the_official_loss():
    distiller, batch = _distiller(), make_batch()
    out, logits, features = eval_step(distiller, batch, STEP)
    with torch.no_grad():
        refined, teacher_logits = distiller.self_teacher(features)
    torch.testing.assert_close(out["loss/ce"], F.cross_entropy(logits, batch.labels))
    torch.testing.assert_close(out["loss/self_teacher_ce"], F.cross_entropy(teacher_logits, batch.labels))
    torch.testing.assert_close(out["loss/kd"], 2.0 * kd_loss(logits, teacher_logits, 4.0))
    torch.testing.assert_close(out["loss/at"], 100.0 * sum(at_loss(f, r) for f, r in zip(features, refined, strict=True)))
    distiller.train()
    out = distiller(batch, STEP)
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/self_teacher_ce"] + out["loss/kd"] + out["loss/at"])
    out["loss"].backward()
    assert all(p.grad is not None for p in distiller.self_teacher.parameters())
    assert all(p.grad is not None for p in distiller.student.parameters())


def test_frskd_distillation_terms_do_not_train_the_self_teacher():
    distiller = _distiller().train()
    out = distiller(make_batch(), STEP)
    (out["loss/kd"] + out["loss/at"]).backward()
    assert all(p.grad is None for p in distiller.self_teacher.parameters())
