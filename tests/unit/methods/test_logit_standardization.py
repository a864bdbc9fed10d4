"""Logit standardisation (Sun et al. 2024) on kd, dkd and ctkd: golden values and the official companions."""

import pytest
import torch
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.losses import dkd_loss, kd_loss, standardize_logits
from kdcore.methods import StepInfo, get_method

STUDENT = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]])
TEACHER = torch.tensor([[2.0, 4.0, 7.0, 8.0], [3.0, 0.0, -2.0, 1.0]])


def test_standardize_divides_by_the_sample_standard_deviation_plus_eps():
    # mean 2.5, Bessel std sqrt(5/3) = 1.2909944
    expected = torch.tensor([[-1.1618949, -0.3872983, 0.3872983, 1.1618949]])
    torch.testing.assert_close(standardize_logits(torch.tensor([[1.0, 2.0, 3.0, 4.0]])), expected)


def test_standardised_kd_golden_value():
    # z-scored rows, softmax at τ 2, KL summed over classes, mean over rows, ×τ²: computed by hand in plain Python
    loss = kd_loss(standardize_logits(STUDENT), standardize_logits(TEACHER), 2.0)
    torch.testing.assert_close(loss, torch.tensor(0.47338939))


@pytest.mark.parametrize("name", ["kd", "dkd", "ctkd"])
def test_the_flag_brings_the_official_companions_and_given_values_win(name):
    method = get_method(name)
    hp = method.Hyperparams(logit_standardization=True)
    assert hp.logit_standardization and hp.kd_weight == 9.0
    if name != "ctkd":
        assert hp.temperature == 2.0
        assert method.Hyperparams(logit_standardization=True, temperature=3.0, kd_weight=5.0).model_dump(include={"temperature", "kd_weight"}) == {
            "temperature": 3.0,
            "kd_weight": 5.0,
        }
    plain = method.Hyperparams()
    assert not plain.logit_standardization and plain.kd_weight == {"kd": 0.9, "dkd": 1.0, "ctkd": 0.9}[name]


def build(name, tmp_path, **hparams):
    method = get_method(name)
    teacher = make_teacher(tmp_path)
    return method(make_student(), [teacher], method.Hyperparams(**hparams), make_context()).train(), teacher


@pytest.mark.parametrize("name", ["kd", "dkd", "ctkd"])
def test_a_step_distils_the_standardised_logits(name, tmp_path):
    distiller, teacher = build(name, tmp_path, logit_standardization=True)
    batch = make_batch()
    out = distiller(batch, StepInfo(30, 0, 120, 4, 40))
    with torch.no_grad():
        z_s, z_t = standardize_logits(out["output"]), standardize_logits(teacher(batch.images))
        if name == "kd":
            expected = 9.0 * kd_loss(z_s, z_t, 2.0)
        elif name == "dkd":
            expected = 9.0 * dkd_loss(z_s, z_t, batch.labels, 1.0, 8.0, 2.0)
        else:
            expected = 9.0 * kd_loss(z_s, z_t, distiller.temperature(teacher(batch.images), out["output"], 30))
    torch.testing.assert_close(out["loss/kd"].detach(), expected)


def test_standardised_kd_ignores_the_teachers_logit_scale_and_shift(tmp_path):
    """What the paper is for: only the teacher's logit relations reach the student."""
    distiller, _ = build("kd", tmp_path, logit_standardization=True)
    student = torch.randn(8, 10)
    teacher = torch.randn(8, 10)
    z_s = standardize_logits(student)
    torch.testing.assert_close(kd_loss(z_s, standardize_logits(teacher), 2.0), kd_loss(z_s, standardize_logits(5.0 * teacher + 3.0), 2.0))
    assert not torch.allclose(kd_loss(student, teacher, 2.0), kd_loss(student, 5.0 * teacher + 3.0, 2.0))
