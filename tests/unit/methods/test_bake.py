import pytest
import torch
from factories import make_batch, make_context, make_student
from torch.nn import functional as F

from kdcore.errors import BadSpec
from kdcore.losses import bake_soft_targets
from kdcore.methods import StepInfo, get_method
from kdcore.methods.bake import ClassBalancedBatchPlan, pooled_features_and_logits


def test_bake_defaults_are_the_papers():
    hp = get_method("bake").Hyperparams()
    assert (hp.omega, hp.temperature, hp.weight, hp.intra_imgs) == (0.5, 4.0, 1.0, 1)
    assert get_method("bake").teacher_count == (0, 0)


def test_soft_targets_are_distributions():
    generator = torch.Generator().manual_seed(0)
    targets = bake_soft_targets(torch.randn(12, 5, generator=generator), torch.randn(12, 7, generator=generator))
    assert (targets >= 0).all()
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(12))


def test_closed_form_is_the_limit_of_iterated_propagation():
    """q_{t+1} = ω·Â·q_t + (1−ω)·p converges to (1−ω)(I−ωÂ)⁻¹p (the paper's Eq. for t → ∞)."""
    generator = torch.Generator().manual_seed(1)
    features, logits = torch.randn(6, 4, generator=generator), torch.randn(6, 3, generator=generator)
    omega, tau = 0.5, 2.0
    normed = features / features.norm(dim=1, keepdim=True)
    similarity = normed @ normed.t()
    similarity.fill_diagonal_(float("-inf"))
    affinity = similarity.softmax(dim=1)
    p = (logits / tau).softmax(dim=1)
    q = p.clone()
    for _ in range(200):
        q = omega * affinity @ q + (1 - omega) * p
    torch.testing.assert_close(bake_soft_targets(features, logits, omega, tau), q)


def test_soft_targets_carry_no_gradient():
    features = torch.randn(4, 3, requires_grad=True)
    logits = torch.randn(4, 5, requires_grad=True)
    assert not bake_soft_targets(features, logits).requires_grad


def _plan(intra_imgs: int = 1, batch_size: int = 8, seed: int = 0) -> tuple[ClassBalancedBatchPlan, torch.Tensor]:
    labels = torch.arange(5).repeat_interleave(torch.tensor([6, 5, 1, 8, 4]))
    return ClassBalancedBatchPlan(labels, batch_size, seed, intra_imgs), labels


@pytest.mark.parametrize("intra_imgs", [1, 3])
def test_batch_plan_brings_same_class_images_for_each_anchor(intra_imgs):
    plan, labels = _plan(intra_imgs)
    anchors = plan.anchors_per_batch
    assert anchors == 8 // (intra_imgs + 1)
    for batch in plan.batches(0):
        assert len(batch) == anchors * (intra_imgs + 1)
        head, partners = batch[:anchors], batch[anchors:].view(anchors, intra_imgs)
        assert (labels[partners] == labels[head][:, None]).all()
        singleton_class = labels[head] == 2
        assert (partners[~singleton_class] != head[~singleton_class][:, None]).all()
        for row in partners[labels[head] != 2]:
            if intra_imgs < 4:
                assert len(set(row.tolist())) == intra_imgs


def test_batch_plan_covers_the_epoch_with_each_image_an_anchor_once():
    plan, labels = _plan(intra_imgs=1, batch_size=8)
    assert plan.steps_per_epoch() == len(labels) // 4
    anchors = torch.cat([batch[: plan.anchors_per_batch] for batch in plan.batches(0)])
    assert len(set(anchors.tolist())) == len(anchors) == plan.steps_per_epoch() * 4


def test_batch_plan_is_a_pure_function_of_seed_and_epoch():
    first, _ = _plan(seed=3)
    again, _ = _plan(seed=3)
    other, _ = _plan(seed=4)
    for epoch in (0, 5):
        assert all(torch.equal(a, b) for a, b in zip(first.batches(epoch), again.batches(epoch), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first.batches(0), first.batches(1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first.batches(0), other.batches(0), strict=True))


def test_bake_uses_the_class_balanced_plan():
    method = get_method("bake")
    plan = method.batch_plan(method.Hyperparams(intra_imgs=3), torch.arange(10) % 2, 16, 0)
    assert isinstance(plan, ClassBalancedBatchPlan) and plan.anchors_per_batch == 4


def test_pooled_features_are_the_inputs_of_the_classifier():
    student = make_student().eval()
    images = make_batch().images
    features, logits = pooled_features_and_logits(student, images)
    torch.testing.assert_close(logits, student(images))
    torch.testing.assert_close(student.model.fc(features), logits)


def test_bake_step_trains_only_the_student_with_the_official_loss():
    method = get_method("bake")
    hp = method.Hyperparams()
    distiller = method(make_student(), [], hp, make_context())
    distiller.train()
    batch = make_batch(n=8)
    out = distiller(batch, StepInfo(0, 0, 0, 4, 2))
    assert set(out) >= {"loss", "output", "loss/ce", "loss/kd"}
    torch.testing.assert_close(out["loss"], out["loss/ce"] + out["loss/kd"])
    features, logits = pooled_features_and_logits(distiller.student, batch.images)
    targets = bake_soft_targets(features, logits, hp.omega, hp.temperature)
    log_p = F.log_softmax(logits / hp.temperature, dim=1)
    expected = (targets * (targets.log() - log_p)).sum() / len(logits) * hp.temperature**2
    torch.testing.assert_close(out["loss/kd"], expected)
    assert {id(p) for p in distiller.trainable_parameters()} == {id(p) for p in distiller.student.parameters()}
    before = [p.detach().clone() for p in distiller.student.parameters()]
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.1)
    out["loss"].backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, distiller.student.parameters(), strict=True))


def test_bake_refuses_a_student_without_pre_logit_features():
    student = make_student()
    student.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    with pytest.raises(BadSpec):
        get_method("bake")(student, [], get_method("bake").Hyperparams(), make_context())
