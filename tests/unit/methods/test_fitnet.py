import pytest
import torch
from distiller_steps import training_step
from factories import make_batch, make_context, make_student, make_teacher
from torch import nn

from kdcore.errors import BadSpec
from kdcore.methods import StepInfo, get_method
from kdcore.methods.fitnet import HintRegressor

STEP = StepInfo(0, 0, 0, 4, 2)


def _distiller(tmp_path, arch="cifar_resnet8", input_size=(3, 16, 16), **hparams):
    method = get_method("fitnet")
    teacher = make_teacher(tmp_path, "cifar_resnet20")
    return method(make_student(arch, input_size=input_size), [teacher], method.Hyperparams(**hparams), make_context(input_size=input_size)), teacher


def test_fitnet_defaults_are_repdistillers():
    method = get_method("fitnet")
    hp = method.Hyperparams()
    assert (hp.beta, hp.ce_weight, hp.hint_stage) == (100.0, 1.0, None)
    assert method.needs_teacher_features and method.teacher_count == (1, 1)


@pytest.mark.parametrize(
    ("student_shape", "teacher_shape", "conv_type"),
    [
        ((8, 8, 8), (16, 4, 4), nn.Conv2d),
        ((8, 4, 4), (16, 8, 8), nn.ConvTranspose2d),
        ((8, 6, 6), (16, 4, 4), nn.Conv2d),
        ((8, 4, 4), (16, 4, 4), nn.Conv2d),
        ((8, 2, 2), (16, 7, 7), nn.Conv2d),
    ],
)
def test_hint_regressor_maps_student_shape_onto_teacher_shape(student_shape, teacher_shape, conv_type):
    regressor = HintRegressor(student_shape, teacher_shape)
    assert type(regressor.conv) is conv_type
    out = regressor(torch.randn(2, *student_shape))
    assert out.shape == (2, *teacher_shape)
    assert (out >= 0).all()


def test_fitnet_uses_the_middle_stage_and_trains_student_and_regressor(tmp_path):
    distiller, teacher = _distiller(tmp_path)
    assert (distiller.student_stage, distiller.teacher_stage) == (1, 1)
    distiller.train()
    batch = make_batch()
    out = distiller(batch, STEP)
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in distiller.regressor.parameters())
    assert all(p.grad is not None for p in distiller.student.model.stages[1].parameters())
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/hint"])
    with torch.no_grad():
        _, fs = distiller._student_features[0](batch.images)
        _, ft = distiller._teacher_features[0](batch.images)
        expected = 100.0 * torch.nn.functional.mse_loss(distiller.regressor(fs[1]), ft[1])
    torch.testing.assert_close(out["loss/hint"], expected, rtol=1e-4, atol=1e-5)


def test_fitnet_rejects_an_out_of_range_hint_stage(tmp_path):
    with pytest.raises(BadSpec):
        _distiller(tmp_path, hint_stage=3)


def test_fitnet_works_with_a_timm_student_at_another_resolution(tmp_path):
    pytest.importorskip("timm")
    distiller, _ = _distiller(tmp_path, "resnet10t", (3, 32, 32))
    out = training_step(distiller, make_batch(4, (3, 32, 32)), STEP)
    assert torch.isfinite(out["loss"])
    assert all(p.grad is not None for p in distiller.regressor.parameters())
