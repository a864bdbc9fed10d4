import torch
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.losses import kd_loss
from kdcore.methods import StepInfo, get_method


def test_kd_step_trains_student_and_leaves_teacher_untouched(tmp_path):
    method = get_method("kd")
    teacher = make_teacher(tmp_path)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller = method(make_student(), [teacher], method.Hyperparams(), make_context())
    distiller.train()
    assert not teacher.training
    out = distiller(make_batch(), StepInfo(0, 0, 0, 4, 2))
    assert set(out) >= {"loss", "output", "loss/ce", "loss/kd"}
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/kd"])
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_kd_defaults_are_hintons_with_repdistiller_weights():
    hp = get_method("kd").Hyperparams()
    assert (hp.temperature, hp.ce_weight, hp.kd_weight) == (4.0, 0.1, 0.9)


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 2.0, 1.0]])
    p_t = torch.softmax(t / 2, 1)
    log_p_s = torch.log_softmax(s / 2, 1)
    expected = (p_t * (p_t.log() - log_p_s)).sum() * 4
    torch.testing.assert_close(kd_loss(s, t, 2.0), expected)
