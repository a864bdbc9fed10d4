"""Golden values for every function in kdcore.losses, worked out by hand on tiny tensors."""

import math

import torch

from kdcore.losses import (
    accuracy_counts,
    at_loss,
    attention_map,
    bake_soft_targets,
    dkd_loss,
    ensemble_soft_targets,
    kd_loss,
    soft_cross_entropy,
)

LN2, LN3 = math.log(2.0), math.log(3.0)
# KL([3/4, 1/4] ‖ [1/2, 1/2]): the teacher row [ln 3, 0] against a uniform student at τ 1.
KL_3_1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def close(actual: torch.Tensor, expected: float | list) -> None:
    torch.testing.assert_close(actual.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_kd_loss_is_tau_squared_kl_averaged_over_the_batch():
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    close(kd_loss(student, teacher, 1.0), KL_3_1 / 2)
    close(kd_loss(student, 2 * teacher, 2.0), 4 * KL_3_1 / 2)


def test_kd_loss_takes_a_per_sample_temperature_and_passes_it_gradients():
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[LN3, 0.0], [2 * LN3, 0.0]])
    tau = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = kd_loss(student, teacher, tau)
    close(loss, (KL_3_1 + 4 * KL_3_1) / 2)
    loss.backward()
    assert tau.grad is not None and torch.all(tau.grad != 0)


def test_soft_cross_entropy_against_explicit_soft_labels():
    student = torch.tensor([[0.0, 0.0], [0.0, LN3]])
    targets = torch.tensor([[0.3, 0.7], [1.0, 0.0]])
    # row 1: −(0.3+0.7)·ln ½ = ln 2; row 2: −ln ¼ = 2 ln 2.
    close(soft_cross_entropy(student, targets), 1.5 * LN2)


def test_ensemble_soft_targets_average_probabilities_not_logits():
    first = torch.tensor([[0.0, LN3]])
    second = torch.tensor([[0.0, 0.0]])
    close(ensemble_soft_targets([first, second]), [[3 / 8, 5 / 8]])
    close(ensemble_soft_targets([2 * first, 2 * second], temperature=2.0), [[3 / 8, 5 / 8]])


# Three classes, target 0, uniform student; teacher probabilities [4, 3, 1]/8.
TEACHER_431 = [math.log(4.0), LN3, 0.0]
TCKD = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)  # KL([1/2, 1/2] ‖ [1/3, 2/3])
NCKD = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL([3/4, 1/4] ‖ [1/2, 1/2])


def test_dkd_loss_splits_into_target_and_non_target_terms():
    student, teacher, target = torch.zeros(1, 3), torch.tensor([TEACHER_431]), torch.tensor([0])
    close(dkd_loss(student, teacher, target, alpha=1.0, beta=0.0, temperature=1.0), TCKD)
    close(dkd_loss(student, teacher, target, alpha=0.0, beta=1.0, temperature=1.0), NCKD)
    close(dkd_loss(student, teacher, target, alpha=1.0, beta=8.0, temperature=1.0), TCKD + 8 * NCKD)
    close(dkd_loss(student, 2 * teacher, target, alpha=1.0, beta=8.0, temperature=2.0), 4 * (TCKD + 8 * NCKD))


def test_dkd_loss_recovers_kd_when_nckd_is_weighted_by_the_teachers_non_target_mass():
    # Zhao et al. 2022 Eq. 5: KD = TCKD + (1 − p_t^target)·NCKD; here p_t^target = 1/2.
    student, teacher, target = torch.zeros(1, 3), torch.tensor([TEACHER_431]), torch.tensor([0])
    kd = 0.5 * math.log(1.5) + 0.375 * math.log(9 / 8) + 0.125 * math.log(3 / 8)
    close(kd_loss(student, teacher, 1.0), kd)
    close(dkd_loss(student, teacher, target, alpha=1.0, beta=0.5, temperature=1.0), kd)


def test_dkd_loss_per_sample_and_tensor_temperatures():
    student = torch.zeros(2, 3)
    teacher = torch.tensor([TEACHER_431, [2 * v for v in TEACHER_431]])
    target = torch.tensor([0, 0])
    per_sample = dkd_loss(student, teacher, target, 1.0, 8.0, torch.tensor([1.0, 2.0]))
    close(per_sample, (1 + 4) * (TCKD + 8 * NCKD) / 2)
    scalar = dkd_loss(student[:1], teacher[:1], target[:1], 1.0, 8.0, torch.tensor(1.0))
    close(scalar, TCKD + 8 * NCKD)


def test_attention_map_is_normalised_channel_mean_of_the_power():
    feature = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # [1, 2, 1, 2]
    # mean over channels of F²: [(1+9)/2, (4+0)/2] = [5, 2]
    close(attention_map(feature), [[5 / math.sqrt(29), 2 / math.sqrt(29)]])
    close(attention_map(feature, p=1), [[2 / math.sqrt(5), 1 / math.sqrt(5)]])


def test_at_loss_same_size_and_pooled_before_the_power():
    student = torch.tensor([[[[1.0, 0.0]]]])  # at = [1, 0]
    teacher_same = torch.tensor([[[[0.0, 1.0]]]])  # at = [0, 1]
    close(at_loss(student, teacher_same), 1.0)
    teacher_large = torch.tensor([[[[1.0, 3.0, 2.0, 2.0], [1.0, 3.0, 2.0, 2.0]]]])
    # pooled to 1×2: [2, 2] → at = [1/√2, 1/√2]; mean((1 − 1/√2)², (1/√2)²) = 1 − 1/√2
    close(at_loss(student, teacher_large), 1 - 1 / math.sqrt(2))
    close(at_loss(teacher_large, student), 1 - 1 / math.sqrt(2))


def test_bake_two_samples_closed_form():
    # With two samples each row of Â puts all weight on the other: Â = [[0,1],[1,0]];
    # (1−ω)(I−ωÂ)⁻¹ at ω ½ = [[2/3, 1/3], [1/3, 2/3]].
    features = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    logits = torch.tensor([[0.0, LN3], [0.0, 0.0]])
    close(bake_soft_targets(features, logits, omega=0.5, temperature=1.0), [[1 / 3, 2 / 3], [5 / 12, 7 / 12]])


def test_bake_targets_solve_the_propagation_fixed_point_without_gradients():
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]], requires_grad=True)
    logits = torch.tensor([[0.0, 4.0], [2.0, 0.0], [0.0, 0.0]], requires_grad=True)
    e = math.e
    # cosine similarities: 1↔2 = 1, 1↔3 = 2↔3 = 0; the row softmax skips the diagonal.
    affinity = torch.tensor([[0, e / (e + 1), 1 / (e + 1)], [e / (e + 1), 0, 1 / (e + 1)], [0.5, 0.5, 0]])
    probs = torch.softmax(logits.detach() / 4.0, dim=1)
    q = bake_soft_targets(features, logits, omega=0.5, temperature=4.0)
    assert not q.requires_grad
    torch.testing.assert_close(q, 0.5 * affinity @ q + 0.5 * probs, rtol=1e-5, atol=1e-6)
    close(q.sum(dim=1), [1.0, 1.0, 1.0])


def test_accuracy_counts_top1_top2_and_clipped_top5():
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    target = torch.tensor([2, 0, 0])
    top1, top2, top5 = accuracy_counts(logits, target, topk=(1, 2, 5))
    assert (int(top1), int(top2), int(top5)) == (1, 2, 3)


def test_dkd_loss_gives_a_learned_temperature_finite_gradients():
    # The masked target class has teacher probability exactly 0; F.kl_div would give NaN here.
    student, teacher, target = torch.tensor([[0.3, -1.0, 2.0]]), torch.tensor([TEACHER_431]), torch.tensor([0])
    tau = torch.tensor(3.0, requires_grad=True)
    dkd_loss(student, teacher, target, 1.0, 8.0, tau).backward()
    assert torch.isfinite(tau.grad) and tau.grad != 0
