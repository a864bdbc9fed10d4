import math

import pytest
import torch
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.losses import kd_loss
from kdcore.methods import StepInfo, get_method
from kdcore.methods._curriculum import cosine_lambda, reverse_gradient


def build(tmp_path, **hparams):
    method = get_method("ctkd")
    teacher = make_teacher(tmp_path)
    return method(make_student(), [teacher], method.Hyperparams(**hparams), make_context()), teacher


def test_defaults_are_the_official_ones():
    hp = get_method("ctkd").Hyperparams()
    assert (hp.mode, hp.t_start, hp.t_end, hp.theta_init, hp.cosine_epochs) == ("global", 1.0, 20.0, 1.0, 10)
    assert (hp.lambda_start, hp.lambda_end, hp.ce_weight, hp.kd_weight) == (0.0, 1.0, 0.1, 0.9)


def test_cosine_lambda_rises_from_zero_to_one_and_stays():
    assert cosine_lambda(0, 10) == 0.0
    assert cosine_lambda(5, 10) == pytest.approx(0.5)
    assert cosine_lambda(10, 10) == pytest.approx(1.0)
    assert cosine_lambda(37, 10) == pytest.approx(1.0)
    assert cosine_lambda(-3, 10) == 0.0


def test_trainer_epoch_zero_is_the_official_first_epoch(tmp_path):
    distiller, _ = build(tmp_path)
    assert distiller.temperature.reversal_weight(0) == pytest.approx((1 - math.cos(math.pi / 10)) / 2)
    assert distiller.temperature.reversal_weight(4) == pytest.approx(0.5)
    assert distiller.temperature.reversal_weight(9) == pytest.approx(1.0)


def test_gradient_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = reverse_gradient(x, 0.3)
    torch.testing.assert_close(y, x.detach())
    (y * torch.tensor([2.0, 5.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.6, -1.5]))


def test_temperature_gradient_is_minus_lambda_times_the_kd_gradient(tmp_path):
    distiller, teacher = build(tmp_path)
    distiller.train()
    batch = make_batch()
    out = distiller(batch, StepInfo(4, 0, 16, 4, 20))  # official epoch 5: λ = 0.5
    out["loss"].backward()
    theta = distiller.temperature.predictor.theta
    plain = theta.detach().clone().requires_grad_(True)
    with torch.no_grad():
        teacher_logits = teacher(batch.images)
    loss = 0.9 * kd_loss(out["output"].detach(), teacher_logits, 1.0 + 20.0 * torch.sigmoid(plain))
    (expected,) = torch.autograd.grad(loss, plain)
    torch.testing.assert_close(theta.grad, -0.5 * expected)
    assert torch.sign(theta.grad) == -torch.sign(expected) and expected != 0
    assert distiller.signals()["temperature"] == pytest.approx(1 + 20 / (1 + math.exp(-1)), rel=1e-5)
    assert distiller.signals()["grl_lambda"] == pytest.approx(0.5)


def test_a_step_on_the_temperature_alone_raises_the_kd_loss(tmp_path):
    distiller, _ = build(tmp_path)
    distiller.train()
    batch = make_batch()
    info = StepInfo(12, 0, 48, 4, 20)  # λ = 1
    before = distiller(batch, info)
    before["loss/kd"].backward()
    optimizer = torch.optim.SGD(distiller.temperature.parameters(), lr=0.5)
    optimizer.step()
    with torch.no_grad():
        after = distiller(batch, info)
    assert after["loss/kd"] > before["loss/kd"]


def test_step_trains_student_and_temperature_and_leaves_teacher_untouched(tmp_path):
    distiller, teacher = build(tmp_path)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller.train()
    out = distiller(make_batch(), StepInfo(0, 0, 0, 4, 2))
    assert set(out) >= {"loss", "output", "loss/ce", "loss/kd"}
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/kd"])
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    assert distiller.temperature.predictor.theta.grad is not None
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_instance_mode_gives_one_temperature_per_sample(tmp_path):
    distiller, _ = build(tmp_path, mode="instance")
    distiller.train()
    batch = make_batch(n=6)
    logits = distiller.student(batch.images)
    teacher_logits = distiller.teacher_logits(batch)[0]
    tau = distiller.temperature(teacher_logits, logits, 3)
    assert tau.shape == (6,)
    assert torch.all((tau > 1.0) & (tau < 21.0)) and tau.std() > 0
    out = distiller(batch, StepInfo(3, 0, 12, 4, 20))
    out["loss"].backward()
    mlp_grads = [p.grad for p in distiller.temperature.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in mlp_grads)


def test_kd_keeps_a_fixed_temperature_by_default_and_takes_a_curriculum(tmp_path):
    kd = get_method("kd")
    teacher = make_teacher(tmp_path)
    plain = kd(make_student(), [teacher], kd.Hyperparams(), make_context())
    assert plain.hparams.temperature == 4.0 and plain.curriculum is None and plain.signals() == {}
    learned = kd(make_student(), [teacher], kd.Hyperparams(temperature="curriculum", curriculum={"mode": "instance"}), make_context())
    learned.train()
    out = learned(make_batch(), StepInfo(0, 0, 0, 4, 2))
    out["loss"].backward()
    assert all(p.grad is not None for p in learned.curriculum.parameters())
    assert set(learned.signals()) == {"temperature", "grl_lambda"}
    with pytest.raises(ValueError):
        kd.Hyperparams(temperature="hot")
