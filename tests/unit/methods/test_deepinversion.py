import math

import pytest
import torch
from factories import make_context, make_student, make_teacher
from torch import nn

from kdcore.methods import StepInfo, get_method
from kdcore.methods.deepinversion import (
    BatchNormMatching,
    LowestLossIterate,
    balanced_targets,
    batchnorm_statistics_distance,
    competition_loss,
    cosine_with_warmup,
    scaled_jitter,
    total_variation_l2,
)

QUICK = {"inversion_iterations": 3, "pool_size": 12, "inversion_batch_size": 8, "jitter": 2}


def make_distiller(tmp_path, **overrides):
    method = get_method("deepinversion")
    teacher = make_teacher(tmp_path)
    hparams = method.Hyperparams(**{**QUICK, **overrides})
    distiller = method(make_student(), [teacher], hparams, make_context())
    distiller.train()
    return distiller


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to its input's batch statistics, layer by layer in eval mode."""
    model.eval()
    for layer in [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]:
        seen: dict[str, torch.Tensor] = {}
        handle = layer.register_forward_hook(lambda mod, inp, out, seen=seen: seen.setdefault("x", inp[0]))
        with torch.no_grad():
            model(images)
        handle.remove()
        layer.running_mean.copy_(seen["x"].mean(dim=(0, 2, 3)))
        layer.running_var.copy_(seen["x"].var(dim=(0, 2, 3), unbiased=False))


def test_statistics_distance_is_zero_when_they_match_and_hand_computed_otherwise():
    x = torch.randn(4, 3, 5, 5)
    norm = nn.BatchNorm2d(3)
    norm.running_mean.copy_(x.mean(dim=(0, 2, 3)))
    norm.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))
    torch.testing.assert_close(batchnorm_statistics_distance(x, norm), torch.tensor(0.0))
    norm.running_mean.add_(torch.tensor([3.0, 0.0, 4.0]))
    norm.running_var.add_(torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(batchnorm_statistics_distance(x, norm), torch.tensor(5.0 + 1.0))


def test_matching_loss_vanishes_for_a_teacher_whose_statistics_are_those_of_the_batch(tmp_path):
    teacher = make_teacher(tmp_path)
    images = torch.rand(16, 3, 16, 16)
    calibrate_batchnorm(teacher.net.model, teacher.net.preprocess(images))
    with BatchNormMatching(teacher.net.model) as matching, torch.no_grad():
        teacher(images)
        assert len(matching.distances) == len(matching.layers) > 1
        assert float(matching.loss(10.0)) < 1e-4
        teacher(torch.rand(16, 3, 16, 16) * 0.2)
        assert float(matching.loss(10.0)) > 1e-2


def test_first_layer_is_scaled_by_its_multiplier():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.BatchNorm2d(2))
    model.eval()
    x = torch.randn(4, 2, 3, 3)
    with BatchNormMatching(model) as matching:
        model(x)
        first, second = (d.clone() for d in matching.distances)
        torch.testing.assert_close(matching.loss(10.0), 10.0 * first + second)


def test_total_variation_and_competition_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    expected = math.sqrt(1 + 4) + math.sqrt(4 + 9) + abs(2.0 - 1.0) + abs(0.0 - 4.0)
    torch.testing.assert_close(total_variation_l2(image), torch.tensor(expected))
    logits = torch.randn(4, 10)
    torch.testing.assert_close(competition_loss(logits, logits), torch.tensor(1.0))
    assert float(competition_loss(torch.eye(4) * 50, torch.eye(4).flip(0) * 50)) < 0.8


def test_targets_are_balanced_and_schedule_warms_up_then_decays():
    targets = balanced_targets(25, 10)
    assert torch.bincount(targets, minlength=10).tolist().count(3) == 5
    assert cosine_with_warmup(0.2, 0, 10, 100) == pytest.approx(0.02)
    assert cosine_with_warmup(0.2, 10, 10, 100) == pytest.approx(0.2)
    assert cosine_with_warmup(0.2, 99, 10, 100) < 0.001


def test_inversion_moves_pixels_towards_the_targets(tmp_path):
    distiller = make_distiller(tmp_path, inversion_iterations=1)
    torch.manual_seed(0)
    one_step, targets = distiller.synthesise()
    distiller.hparams = distiller.Hyperparams(**{**QUICK, "inversion_iterations": 30, "keep_best": False})
    torch.manual_seed(0)
    thirty_steps, same_targets = distiller.synthesise()
    assert torch.equal(targets, same_targets)
    assert not torch.allclose(one_step, thirty_steps)
    assert 0.0 <= float(thirty_steps.min()) and float(thirty_steps.max()) <= 1.0
    teacher = distiller.teachers[0]
    with torch.no_grad():
        before = nn.functional.cross_entropy(teacher(one_step), targets)
        after = nn.functional.cross_entropy(teacher(thirty_steps), targets)
    assert after < before
    assert 0.0 <= distiller.signals()["teacher_accuracy"] <= 1.0


def test_the_pool_is_synthesised_once_over_the_first_steps_and_its_signals_resume(tmp_path):
    distiller = make_distiller(tmp_path, competition_scale=0.2)
    assert (distiller.inversion_batch, distiller.inversion_batches) == (8, 2)  # 12 images in batches of 8
    out = distiller(None, StepInfo(0, 0, 0, 4, 2))
    assert set(out) >= {"loss", "output", "loss/kd"}
    assert int(distiller.syntheses) == 1 and distiller.pool_images[:8].any() and not distiller.pool_images[8:].any()
    assert distiller.student.training and not distiller.teachers[0].training  # ADI runs the student in eval, then restores it
    distiller(None, StepInfo(0, 1, 1, 4, 2))
    assert int(distiller.syntheses) == 2
    pool = distiller.pool_images.clone()
    for step in range(2, 5):
        distiller(None, StepInfo(0, step, step, 4, 2))
    assert int(distiller.syntheses) == 2 and torch.equal(distiller.pool_images, pool)
    restored = make_distiller(tmp_path, competition_scale=0.2)
    restored.load_method_state(distiller.method_state())
    assert restored.signals() == distiller.signals()


def test_defaults_are_the_official_imagenet_settings_at_a_cpu_sized_budget_and_the_paper_budget_a_preset_away():
    hp = get_method("deepinversion").Hyperparams()
    assert (hp.r_feature, hp.first_bn_multiplier, hp.tv_l2, hp.l2) == (0.05, 10.0, 1e-4, 1e-5)
    assert (hp.lr, hp.beta1, hp.beta2, hp.jitter, hp.flip) == (0.2, 0.5, 0.9, 30, True)
    assert (hp.competition_scale, hp.inversion_iterations, hp.pool_size, hp.kd_temperature) == (0.0, 150, 1024, 3.0)
    paper = get_method("deepinversion").Hyperparams(preset="paper")
    assert (paper.inversion_iterations, paper.inversion_batch_size, paper.pool_size, paper.r_feature) == (2000, 256, 50_000, 10.0)
    assert paper.batches(64) == (256, 196)
    method = get_method("deepinversion")
    assert not method.needs_dataset and method.needs_batchnorm_statistics and method.teacher_count == (1, 1)


def test_the_kept_iterate_is_the_one_after_the_lowest_loss():
    start = torch.zeros(2, 1, 2, 2)
    best = LowestLossIterate(start)
    for loss, value in ((3.0, 1.0), (2.0, 2.0), (2.5, 3.0)):
        best.offer(torch.tensor(loss), torch.full_like(start, value))
    torch.testing.assert_close(best.pixels, torch.full_like(start, 2.0))
    assert float(best.loss) == 2.0


def test_presets_scale_the_jitter_or_take_the_official_cifar_script(tmp_path):
    assert [scaled_jitter(side) for side in (224, 32, 16, 4)] == [30, 4, 2, 1]
    assert make_distiller(tmp_path, jitter="scaled").jitter_pixels() == 2  # the 16-px test teacher
    cifar = get_method("deepinversion").Hyperparams(preset="cifar")
    assert (cifar.r_feature, cifar.first_bn_multiplier, cifar.lr, cifar.beta1, cifar.beta2) == (10.0, 1.0, 0.05, 0.9, 0.999)
    assert (cifar.tv_l2, cifar.l2, cifar.jitter, cifar.flip, cifar.lr_schedule, cifar.keep_best) == (2.5e-5, 0.0, 2, False, "constant", True)
    default = get_method("deepinversion").Hyperparams()
    assert (default.jitter, default.lr_schedule, default.keep_best) == (30, "cosine", True)
