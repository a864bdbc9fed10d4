import torch
from factories import make_context, make_student, make_teacher
from torch import nn

from kdcore.methods import StepInfo, get_method
from kdcore.methods.datafree_generative import BatchNormMoments, ConditionalGenerator, batchnorm_moment_distance

STEP = StepInfo(0, 0, 0, 4, 2)


def _distiller(tmp_path, **hparams):
    method = get_method("datafree_generative")
    distiller = method(make_student(), [make_teacher(tmp_path)], method.Hyperparams(**hparams), make_context())
    return distiller.train()


def _calibrate_running_stats_to(model: nn.Module, images: torch.Tensor) -> None:
    """Set every BatchNorm's running stats to the batch stats of its own input, in forward order."""

    def set_to_input_stats(module, inputs):
        module.running_mean.copy_(inputs[0].mean(dim=(0, 2, 3)))
        module.running_var.copy_(inputs[0].var(dim=(0, 2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(set_to_input_stats) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()


def test_defaults_and_flags():
    method = get_method("datafree_generative")
    hp = method.Hyperparams()
    assert (hp.generators, hp.bn_weight, hp.tv_weight, hp.l2_weight, hp.generator_lr, hp.temperature) == (1, 1.0, 1e-4, 1e-5, 1e-3, 1.0)
    assert not method.needs_dataset and method.needs_batchnorm_statistics and method.teacher_count == (1, 1)


def test_moment_distance_matches_hand_computation():
    x = torch.tensor([1.0, 3.0, 2.0, 6.0]).view(2, 2, 1, 1)  # channel 0: {1, 2}, channel 1: {3, 6}
    running_mean, running_var = torch.tensor([1.5, 3.5]), torch.tensor([0.25, 1.0])
    mean_gap = torch.tensor([0.0, 1.0]).norm()
    var_gap = torch.tensor([0.0, 2.25 - 1.0]).norm()
    torch.testing.assert_close(batchnorm_moment_distance(x, running_mean, running_var), mean_gap + var_gap)


def test_bn_loss_is_zero_when_batch_stats_equal_running_stats(tmp_path):
    teacher = make_teacher(tmp_path)
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    _calibrate_running_stats_to(teacher.net, images)
    moments = BatchNormMoments(teacher.net.model)
    with moments:
        teacher(images)
    assert len(moments.distances) == len(moments.layers) > 5
    assert float(moments.loss()) < 1e-4
    with moments:
        teacher(torch.rand(16, 3, 16, 16))
    assert float(moments.loss()) > 1e-2
    assert all(not layer._forward_hooks for layer in moments.layers)


def test_generator_layout_follows_the_seed():
    small, large = ConditionalGenerator(10, (3, 32, 32)), ConditionalGenerator(1, (3, 224, 224))
    assert (small.latent_dim, small.start_hw, small.project.out_features) == (1024, (8, 8), 8 * 8 * 128)
    assert (large.latent_dim, large.start_hw, large.project.out_features) == (512, (7, 7), 7 * 7 * 64)
    images = small(torch.randn(4, 1024), torch.tensor([0, 3, 9, 9]))
    assert images.shape == (4, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def test_step_trains_generator_and_student_never_the_teacher(tmp_path):
    distiller = _distiller(tmp_path)
    teacher = distiller.teachers[0]
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    generator_before = [p.detach().clone() for p in distiller.generators.parameters()]
    out = distiller(None, STEP)
    assert set(out) >= {"loss", "output", "loss/kd", "signal/generator_loss", "signal/batchnorm_loss", "signal/teacher_accuracy"}
    assert out["output"].shape == (8, 10)
    assert any(not torch.equal(b, p) for b, p in zip(generator_before, distiller.generators.parameters(), strict=True))
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, teacher_before[key])
    assert not teacher.training
    student_ids = {id(p) for p in distiller.student.parameters()}
    assert {id(p) for p in distiller.trainable_parameters()} == student_ids
    assert all(id(p) in student_ids for group in distiller.param_groups() for p in group["params"])


def test_class_groups_each_get_a_generator(tmp_path):
    distiller = _distiller(tmp_path, generators=3)
    assert [g.num_classes for g in distiller.generators] == [4, 3, 3] and distiller.group_starts == [0, 4, 7]
    labels, images = distiller.generate(5)
    again_labels, again_images = distiller.eval().generate(5)
    assert torch.equal(labels, again_labels) and images.shape == (8, 3, 16, 16)
    assert len(_distiller(tmp_path, generators=50).generators) == 10


def test_two_phase_trains_the_generator_first_then_freezes_it(tmp_path):
    method = get_method("datafree_generative")
    assert method.Hyperparams(preset="two_phase").generator_steps == 1000
    distiller = _distiller(tmp_path, generator_steps=3)
    initial = [p.detach().clone() for p in distiller.generators.parameters()]
    out = distiller(None, STEP)
    assert int(distiller.generator_updates) == 3
    after_first = [p.detach().clone() for p in distiller.generators.parameters()]
    assert any(not torch.equal(b, p) for b, p in zip(initial, after_first, strict=True))
    assert {"loss/kd", "signal/generator_loss", "signal/teacher_accuracy"} <= set(out)
    own_grads = [p.grad.clone() for p in distiller.generators.parameters()]  # left by the generator's last own update
    out["loss"].backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(own_grads, distiller.generators.parameters(), strict=True)), (
        "the student's loss does not reach the generator"
    )
    assert all(p.grad is not None for p in distiller.student.parameters())
    second = distiller(None, StepInfo(0, 1, 1, 4, 2))
    assert all(torch.equal(b, p) for b, p in zip(after_first, distiller.generators.parameters(), strict=True)), "frozen after its phase"
    assert "signal/generator_loss" not in second and int(distiller.generator_updates) == 3


def test_a_resumed_two_phase_run_makes_only_the_generator_updates_it_had_not_made(tmp_path):
    finished = _distiller(tmp_path, generator_steps=2)
    finished(None, STEP)
    resumed = _distiller(tmp_path, generator_steps=2)
    resumed.load_state_dict(finished.state_dict())
    before = [p.detach().clone() for p in resumed.generators.parameters()]
    resumed(None, StepInfo(0, 1, 1, 4, 2))
    assert all(torch.equal(b, p) for b, p in zip(before, resumed.generators.parameters(), strict=True))
