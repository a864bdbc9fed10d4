"""DIST (Huang et al. 2022): golden values of the relation losses and the method's step."""

import torch
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.losses import dist_loss, pearson_correlation
from kdcore.methods import StepInfo, get_method

STUDENT = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, -1.0, 1.0]])
TEACHER = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 4.0], [1.0, 0.0, 1.0]])


def test_defaults_are_the_official_ones():
    hp = get_method("dist").Hyperparams()
    assert (hp.beta, hp.gamma, hp.temperature, hp.ce_weight, hp.kd_weight) == (1.0, 1.0, 1.0, 1.0, 2.0)
    assert get_method("dist").Hyperparams(preset="cifar").temperature == 4.0
    assert get_method("dist").describe()["presets"] == {"cifar": {"temperature": 4.0}}


def test_pearson_correlation_by_hand():
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 2.0]])
    b = torch.tensor([[2.0, 4.0, 6.5], [0.0, 1.0, 0.0]])
    # row 1: centred (-1,0,1)·(-13/6,-1/6,7/3) = 4.5 over √2·√(61/6); row 2: centred (0,-1,1)·(-1/3,2/3,-1/3) / (√2·√(2/3))
    expected = torch.tensor([4.5 / (2**0.5 * (61 / 6) ** 0.5), -1.0 / (2**0.5 * (2 / 3) ** 0.5)])
    torch.testing.assert_close(pearson_correlation(a, b), expected)


def test_dist_loss_golden_values():
    # softmax rows and columns, Pearson with eps 1e-8 in the denominator: computed by hand in plain Python
    # τ 1: inter 0.41446920, intra 0.28139101
    torch.testing.assert_close(dist_loss(STUDENT, TEACHER), torch.tensor(0.69586021))
    torch.testing.assert_close(dist_loss(STUDENT, TEACHER, beta=0.5, gamma=2.0), torch.tensor(0.77001662))
    # τ 4 (the official CIFAR setting): inter 0.24527627, intra 0.24582164, ×τ² 16
    torch.testing.assert_close(dist_loss(STUDENT, TEACHER, temperature=4.0), torch.tensor(7.85756664))


def test_a_student_that_matches_the_teachers_relations_has_no_dist_loss():
    teacher = torch.randn(6, 5)
    torch.testing.assert_close(dist_loss(teacher.clone(), teacher), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_step_is_ce_plus_twice_dist(tmp_path):
    method = get_method("dist")
    teacher = make_teacher(tmp_path)
    distiller = method(make_student(), [teacher], method.Hyperparams(), make_context()).train()
    batch = make_batch()
    out = distiller(batch, StepInfo(0, 0, 0, 4, 2))
    with torch.no_grad():
        expected_kd = 2.0 * dist_loss(out["output"], teacher(batch.images))
        expected_ce = torch.nn.functional.cross_entropy(out["output"], batch.labels)
    torch.testing.assert_close(out["loss/kd"].detach(), expected_kd)
    torch.testing.assert_close(out["loss/ce"].detach(), expected_ce)
