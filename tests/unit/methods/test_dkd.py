import pytest
import torch
from factories import make_batch, make_context, make_student, make_teacher

from kdcore.losses import dkd_loss
from kdcore.methods import StepInfo, get_method
from kdcore.methods.dkd import warmup_factor


def build(tmp_path, **hparams):
    method = get_method("dkd")
    teacher = make_teacher(tmp_path)
    return method(make_student(), [teacher], method.Hyperparams(**hparams), make_context()), teacher


def test_defaults_are_mdistillers_cifar_ones():
    hp = get_method("dkd").Hyperparams()
    assert (hp.alpha, hp.beta, hp.temperature, hp.ce_weight, hp.warmup_epochs) == (1.0, 8.0, 4.0, 1.0, 20)


def test_warmup_ramps_per_epoch_as_mdistiller_counting_from_one():
    assert warmup_factor(0, 20) == pytest.approx(1 / 20)
    assert warmup_factor(10, 20) == pytest.approx(11 / 20)
    assert warmup_factor(19, 20) == 1.0
    assert warmup_factor(20, 20) == 1.0
    assert warmup_factor(150, 20) == 1.0
    assert warmup_factor(0, 0) == 1.0


@pytest.mark.parametrize("epoch,ramp", [(0, 0.05), (10, 0.55), (25, 1.0)])
def test_step_loss_is_ce_plus_ramped_dkd(tmp_path, epoch, ramp):
    distiller, teacher = build(tmp_path)
    distiller.train()
    batch = make_batch()
    out = distiller(batch, StepInfo(epoch, 0, epoch * 4, 4, 30))
    with torch.no_grad():
        teacher_logits = teacher(batch.images)
        expected_kd = ramp * dkd_loss(out["output"], teacher_logits, batch.labels, 1.0, 8.0, 4.0)
        expected_ce = torch.nn.functional.cross_entropy(out["output"], batch.labels)
    torch.testing.assert_close(out["loss/kd"].detach(), expected_kd)
    torch.testing.assert_close(out["loss/ce"].detach(), expected_ce)
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/kd"])


@pytest.mark.parametrize("mode", ["global", "instance"])
def test_curriculum_temperature_dkd_runs_and_learns_tau(tmp_path, mode):
    distiller, teacher = build(tmp_path, temperature="curriculum", curriculum={"mode": mode})
    distiller.train()
    out = distiller(make_batch(), StepInfo(2, 0, 8, 4, 30))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.curriculum.parameters())
    signals = distiller.signals()
    assert 1.0 < signals["temperature"] < 21.0 and signals["grl_lambda"] > 0
    state = {k: v for k, v in distiller.state_dict().items() if not k.startswith("teachers.")}
    assert any(k.startswith("curriculum.") for k in state)


def test_presets_are_mdistillers_configs_by_pair_and_ctkds_curriculum_run():
    model = get_method("dkd").Hyperparams
    assert {name: model(preset=name).beta for name in ("resnet32x4_resnet8x4", "resnet56_resnet20", "resnet110_resnet32", "wrn_vgg")} == {
        "resnet32x4_resnet8x4": 8.0,
        "resnet56_resnet20": 2.0,
        "resnet110_resnet32": 2.0,
        "wrn_vgg": 6.0,
    }
    imagenet = model(preset="imagenet")
    assert (imagenet.beta, imagenet.temperature, imagenet.warmup_epochs, imagenet.alpha, imagenet.ce_weight) == (0.5, 1.0, 1, 1.0, 1.0)
    curriculum = model(preset="curriculum")
    assert (curriculum.temperature, curriculum.beta, curriculum.warmup_epochs) == ("curriculum", 2.0, 0)
    assert model(preset="curriculum", curriculum={"mode": "instance"}).curriculum.mode == "instance"
    standardised = model(preset="resnet56_resnet20", logit_standardization=True)
    assert (standardised.beta, standardised.kd_weight, standardised.temperature) == (2.0, 9.0, 2.0)  # the LS code's β·9 = 18
