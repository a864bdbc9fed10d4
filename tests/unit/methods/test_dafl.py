import math

import torch
from factories import make_context, make_student, make_teacher

from kdcore.methods import StepInfo, get_method
from kdcore.methods.dafl import DAFLGenerator, activation_loss, information_entropy_loss


def make_distiller(tmp_path, **overrides):
    method = get_method("dafl")
    hparams = method.Hyperparams(**{"latent_dim": 16, **overrides})
    distiller = method(make_student(), [make_teacher(tmp_path)], hparams, make_context())
    distiller.train()
    return distiller


def test_information_entropy_term_is_lowest_for_a_uniform_batch_mean():
    uniform = information_entropy_loss(torch.zeros(4, 10))
    torch.testing.assert_close(uniform, torch.tensor(-math.log10(10)))
    balanced_but_confident = information_entropy_loss(torch.eye(10) * 100)
    torch.testing.assert_close(balanced_but_confident, torch.tensor(-1.0), atol=1e-4, rtol=0)
    one_class = information_entropy_loss(torch.tensor([[5.0, 0.0, 0.0]] * 4))
    assert one_class > information_entropy_loss(torch.zeros(4, 3))
    for _ in range(5):
        assert information_entropy_loss(torch.randn(8, 10) * 3) >= uniform


def test_activation_term_by_hand():
    torch.testing.assert_close(activation_loss(torch.tensor([[1.0, -3.0], [0.0, 2.0]])), torch.tensor(-1.5))


def test_generator_gives_images_in_the_unit_range():
    generator = DAFLGenerator(latent_dim=8, channels=3, height=16, width=16)
    with torch.no_grad():
        images = generator(torch.randn(32, 8))
    assert images.shape == (32, 3, 16, 16)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0 and images.std() > 0


def test_step_updates_generator_trains_student_and_leaves_teacher(tmp_path):
    distiller = make_distiller(tmp_path)
    teacher = distiller.teachers[0]
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    generator_before = [p.detach().clone() for p in distiller.generator.parameters()]
    out = distiller(None, StepInfo(0, 0, 0, 4, 2))
    assert set(out) >= {"loss", "output", "loss/kd", "signal/one_hot", "signal/information_entropy", "signal/activation"}
    assert any(not torch.equal(a, b) for a, b in zip(generator_before, distiller.generator.parameters(), strict=True))
    generator_grads = [None if p.grad is None else p.grad.clone() for p in distiller.generator.parameters()]
    out["loss"].backward()
    for before, p in zip(generator_grads, distiller.generator.parameters(), strict=True):
        assert (before is None and p.grad is None) or torch.equal(before, p.grad)
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, teacher_before[key])
    assert not teacher.training
    trainable = {id(p) for p in distiller.trainable_parameters()}
    assert trainable == {id(p) for p in distiller.student.parameters()}


def test_defaults_are_the_official_cifar10_command():
    hp = get_method("dafl").Hyperparams()
    assert (hp.one_hot_weight, hp.entropy_weight, hp.activation_weight) == (0.05, 5.0, 0.01)
    assert (hp.generator_lr, hp.latent_dim, hp.kd_temperature, hp.steps_per_epoch) == (0.02, 1000, 1.0, 120)
    method = get_method("dafl")
    assert not method.needs_dataset and method.needs_teacher_features and method.teacher_count == (1, 1)


def test_presets_are_the_official_commands_for_mnist_and_cifar100():
    hp = get_method("dafl").Hyperparams
    mnist = hp(preset="mnist")
    assert (mnist.one_hot_weight, mnist.entropy_weight, mnist.activation_weight, mnist.latent_dim, mnist.generator_lr) == (1.0, 5.0, 0.1, 100, 0.2)
    cifar100 = hp(preset="cifar100", latent_dim=500)
    assert (cifar100.one_hot_weight, cifar100.entropy_weight, cifar100.activation_weight, cifar100.latent_dim) == (0.5, 20.0, 0.1, 500)
