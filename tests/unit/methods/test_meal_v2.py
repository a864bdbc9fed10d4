import torch
from factories import make_batch, make_context, make_student, make_teacher
from torch import nn

from kdcore.build import build_optimizer
from kdcore.losses import soft_cross_entropy
from kdcore.methods import StepInfo, get_method
from kdcore.methods.meal_v2 import LogitDiscriminator, discriminator_targets
from kdcore.spec import TrainingConfig


def build(tmp_path, teachers=2, **hparams):
    method = get_method("meal_v2")
    teacher_list = [make_teacher(tmp_path, seed=seed) for seed in range(teachers)]
    return method(make_student(), teacher_list, method.Hyperparams(**hparams), make_context()), teacher_list


def test_defaults_follow_the_official_code():
    method = get_method("meal_v2")
    hp = method.Hyperparams()
    assert (hp.temperature, hp.discriminator_weight, hp.discriminator_lr, hp.discriminator_reduction) == (1.0, 1.0, None, 8)
    assert method.teacher_count == (1, None)


def test_discriminator_shape_is_c_c8_c64_2_with_relu_everywhere():
    widths = [(m.in_features, m.out_features) for m in LogitDiscriminator(1000).layers if isinstance(m, nn.Linear)]
    assert widths == [(1000, 125), (125, 15), (15, 2)]
    small = [(m.in_features, m.out_features) for m in LogitDiscriminator(10).layers if isinstance(m, nn.Linear)]
    assert small == [(10, 8), (8, 8), (8, 2)]
    assert sum(isinstance(m, nn.ReLU) for m in LogitDiscriminator(10).layers) == 3
    assert (LogitDiscriminator(10)(torch.randn(5, 10)) >= 0).all()


def test_targets_mark_students_1_0_then_teachers_0_1():
    torch.testing.assert_close(discriminator_targets(2, torch.device("cpu")), torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))


def test_soft_target_is_the_average_of_the_two_teachers_softmax_and_labels_are_unused(tmp_path):
    distiller, teachers = build(tmp_path)
    distiller.train()
    batch = make_batch()
    out = distiller(batch, StepInfo(0, 0, 0, 4, 2))
    with torch.no_grad():
        probs = [torch.softmax(t(batch.images), dim=1) for t in teachers]
        expected = soft_cross_entropy(out["output"], (probs[0] + probs[1]) / 2)
    assert not torch.allclose(probs[0], probs[1])
    torch.testing.assert_close(out["loss/kd"].detach(), expected)
    torch.testing.assert_close(out["loss"], out["loss/kd"] + out["loss/disc"])
    batch.labels = (batch.labels + 1) % 10
    relabelled = distiller(batch, StepInfo(0, 0, 0, 4, 2))
    torch.testing.assert_close(relabelled["loss"], out["loss"])


def test_joint_step_trains_student_and_discriminator_never_the_teachers(tmp_path):
    distiller, teachers = build(tmp_path)
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    distiller.train()
    out = distiller(make_batch(), StepInfo(0, 0, 0, 4, 2))
    out["loss"].backward()
    assert all(p.grad is None for t in teachers for p in t.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())
    assert all(p.grad is not None for p in distiller.discriminator.parameters())
    assert distiller.discriminator.layers[4].weight.grad.abs().sum() > 0
    accuracy = distiller.signals()["discriminator_accuracy"]
    assert 0.0 <= accuracy <= 1.0
    for teacher, state in zip(teachers, before, strict=True):
        for key, value in teacher.state_dict().items():
            torch.testing.assert_close(value, state[key])


def test_discriminator_group_has_no_weight_decay_and_the_students_lr_as_the_official_run(tmp_path):
    distiller, teachers = build(tmp_path, teachers=1)
    disc = {id(p) for p in distiller.discriminator.parameters()}
    config = TrainingConfig(epochs=1, lr=0.1, weight_decay=5e-4)
    optimizer = build_optimizer(config, distiller)
    student_group, disc_group = optimizer.param_groups
    assert {id(p) for p in disc_group["params"]} == disc and {id(p) for p in student_group["params"]} == {id(p) for p in distiller.student.parameters()}
    assert (disc_group["lr"], disc_group["weight_decay"]) == (0.1, 0.0) and (student_group["lr"], student_group["weight_decay"]) == (0.1, 5e-4)
    distiller.train()
    distiller(make_batch(), StepInfo(0, 0, 0, 4, 2))["loss"].backward()
    weight = distiller.discriminator.layers[4].weight
    expected = weight.detach() - 0.1 * weight.grad
    optimizer.step()
    torch.testing.assert_close(weight.detach(), expected)
    own_lr = get_method("meal_v2")(make_student(), teachers, get_method("meal_v2").Hyperparams(discriminator_lr=1e-4), make_context())
    assert build_optimizer(config, own_lr).param_groups[1]["lr"] == 1e-4
