import pytest
import torch
from distiller_steps import eval_step, training_step
from factories import make_batch, make_context, make_student
from torch.nn import functional as F

from kdcore.methods import StepInfo, get_method

STEP = StepInfo(0, 0, 0, 4, 2)


def _distiller(arch="cifar_resnet8", input_size=(3, 16, 16)):
    method = get_method("byot")
    return method(make_student(arch, input_size=input_size), [], method.Hyperparams(), make_context(input_size=input_size))


def test_byot_defaults_are_the_official_codes():
    method = get_method("byot")
    hp = method.Hyperparams()
    assert (hp.kd_weight, hp.feature_weight, hp.temperature) == (0.3, 0.03, 3.0)
    assert method.teacher_count == (0, 0)


def test_byot_builds_one_exit_per_shallow_stage_and_trains_them_with_the_student():
    distiller = _distiller()
    assert len(distiller.exits) == 2 and len(distiller.adaptations) == 1
    distiller.train()
    batch = make_batch()
    out = distiller(batch, STEP)
    assert set(out) >= {"loss/ce", "loss/exit_ce", "loss/exit_kd", "loss/exit_feature", "signal/exit1_top1", "signal/exit2_top1"}
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/exit_ce"] + out["loss/exit_kd"] + out["loss/exit_feature"])
    out["loss"].backward()
    assert all(p.grad is not None for p in distiller.exits.parameters())
    assert all(p.grad is not None for p in distiller.adaptations.parameters())
    assert all(p.grad is not None for p in distiller.student.parameters())


def test_byot_losses_match_the_official_formulas():
    distiller, batch = _distiller(), make_batch()
    out, logits, features = eval_step(distiller, batch, STEP)
    with torch.no_grad():
        exits = [head(f) for head, f in zip(distiller.exits, features[:-1], strict=True)]
        soft = F.softmax(logits / 3, 1)
        deep = F.adaptive_avg_pool2d(features[-1], 1).flatten(1)
        exit_ce = 0.7 * sum(F.cross_entropy(z, batch.labels) for z, _ in exits)
        exit_kd = 0.3 * sum(-(soft * F.log_softmax(z / 3, 1)).sum(1).mean() for z, _ in exits)
        feature = 0.03 * (distiller.adaptations[0](exits[0][1]) - deep).pow(2).sum().sqrt()
    torch.testing.assert_close(out["loss/ce"], F.cross_entropy(logits, batch.labels))
    torch.testing.assert_close(out["loss/exit_ce"], exit_ce)
    torch.testing.assert_close(out["loss/exit_kd"], exit_kd)
    torch.testing.assert_close(out["loss/exit_feature"], feature)


def test_byot_works_with_a_timm_student():
    pytest.importorskip("timm")
    distiller = _distiller("resnet10t", (3, 32, 32))
    out = training_step(distiller, make_batch(4, (3, 32, 32)), STEP)
    assert torch.isfinite(out["loss"])
    assert all(p.grad is not None for p in distiller.exits.parameters())
