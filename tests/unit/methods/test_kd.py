import torch
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.losses import kd_loss
from kdcore.methods import StepInfo, get_method


def test_kd_step_is_weighted_ce_plus_kd_to_the_teachers_mean_logits(tmp_path):
    method = get_method("kd")
    teachers = [make_teacher(tmp_path, seed=seed) for seed in (0, 1)]
    distiller = method(make_student(), teachers, method.Hyperparams(), make_context()).train()
    batch = make_batch()
    out = distiller(batch, StepInfo(0, 0, 0, 4, 2))
    with torch.no_grad():
        mean_logits = (teachers[0](batch.images) + teachers[1](batch.images)) / 2
        expected_kd = 0.9 * kd_loss(out["output"], mean_logits, 4.0)
        expected_ce = 0.1 * torch.nn.functional.cross_entropy(out["output"], batch.labels)
    torch.testing.assert_close(out["loss/kd"].detach(), expected_kd)
    torch.testing.assert_close(out["loss/ce"].detach(), expected_ce)


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
