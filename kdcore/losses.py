"""The functional core: every distillation loss as a pure function on tensors.

Like ``torch.nn.functional``: no state, no modules, so each can be tested on hand-made tensors and
reused outside the trainer. Names and signatures are public API.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def _as_column(temperature: float | Tensor) -> float | Tensor:
    """A scalar stays a scalar; a per-sample temperature ``[N]`` becomes ``[N,1]`` to broadcast."""
    if isinstance(temperature, Tensor) and temperature.dim() == 1:
        return temperature[:, None]
    return temperature


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float | Tensor = 4.0) -> Tensor:
    """Hinton et al. 2015: τ²·KL(softmax(z_t/τ) ‖ softmax(z_s/τ)), summed over classes, mean over the batch.

    ``temperature`` may be a tensor (CTKD's learnable or per-instance τ); gradients then reach it.
    """
    tau = _as_column(temperature)
    log_p_s = F.log_softmax(student_logits / tau, dim=1)
    log_p_t = F.log_softmax(teacher_logits / tau, dim=1)
    per_sample = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1, keepdim=True) * tau**2
    return per_sample.mean()


def standardize_logits(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Sun et al. 2024 (logit standardisation): each row z-scored, (z − mean)/(eps + std).

    As the official ``normalize``: the sample standard deviation (Bessel-corrected, ``Tensor.std``),
    ``eps`` added to it rather than under the square root.
    """
    return (logits - logits.mean(dim=-1, keepdim=True)) / (eps + logits.std(dim=-1, keepdim=True))


def distillation_logits(student_logits: Tensor, teacher_logits: Tensor, standardize: bool) -> tuple[Tensor, Tensor]:
    """The logits the distillation loss compares: as they are, or each row z-scored (:func:`standardize_logits`)."""
    if not standardize:
        return student_logits, teacher_logits
    return standardize_logits(student_logits), standardize_logits(teacher_logits)


def ce_and_kd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    temperature: float | Tensor,
    ce_weight: float,
    kd_weight: float,
    standardize: bool = False,
) -> dict[str, Tensor]:
    """Hinton KD's objective as named terms: ``ce`` = ce_weight·CE(z_s, y), ``kd`` = kd_weight·:func:`kd_loss`.

    One computation for ``kd`` and ``ctkd``, which differ only in where τ comes from. ``standardize``
    z-scores both logits for the KD term alone; the CE term always sees the raw student logits.
    """
    student_in, teacher_in = distillation_logits(student_logits, teacher_logits, standardize)
    return {"ce": ce_weight * F.cross_entropy(student_logits, target), "kd": kd_weight * kd_loss(student_in, teacher_in, temperature)}


def soft_cross_entropy(student_logits: Tensor, target_probs: Tensor) -> Tensor:
    """Mean over the batch of −Σ p·log softmax(z_s): cross-entropy against a soft label."""
    return -(target_probs * F.log_softmax(student_logits, dim=1)).sum(dim=1).mean()


def ensemble_soft_targets(teacher_logits_list: list[Tensor], temperature: float = 1.0) -> Tensor:
    """MEAL V2: the teachers' softmax outputs averaged (not their logits)."""
    return torch.stack([F.softmax(z / temperature, dim=1) for z in teacher_logits_list]).mean(dim=0)


def _kl_rows(target: Tensor, log_target: Tensor, log_input: Tensor) -> Tensor:
    """Σ_c p·(log p − log q) per row, from log-probabilities so that p = 0 adds 0 to the value and
    to the gradient (``F.kl_div`` gives NaN gradients there when the target depends on a learned τ)."""
    return (target * (log_target - log_input)).sum(dim=1)


def dkd_loss(
    student_logits: Tensor, teacher_logits: Tensor, target: Tensor, alpha: float = 1.0, beta: float = 8.0, temperature: float | Tensor = 4.0
) -> Tensor:
    """Decoupled KD (Zhao et al. 2022): α·TCKD + β·NCKD, both scaled by τ², as mdistiller computes them.

    TCKD is the KL between binary (target, non-target) distributions; NCKD the KL between the
    distributions over non-target classes, obtained by masking the target logit with −1000.
    ``temperature`` may be a tensor (CTKD's DKD variant), per sample ``[N]`` or scalar. Same values
    as mdistiller; the binary probabilities are clamped at 1e-12 before the log (mdistiller would
    give an infinite loss there) and the KL is taken in log space so a learned τ gets finite gradients.
    """
    tau = _as_column(temperature)
    gt_mask = F.one_hot(target, student_logits.shape[1]).bool()
    p_s = F.softmax(student_logits / tau, dim=1)
    p_t = F.softmax(teacher_logits / tau, dim=1)
    b_s = torch.stack([(p_s * gt_mask).sum(1), (p_s * ~gt_mask).sum(1)], dim=1)
    b_t = torch.stack([(p_t * gt_mask).sum(1), (p_t * ~gt_mask).sum(1)], dim=1)
    scale = (tau**2).squeeze(-1) if isinstance(tau, Tensor) else tau**2
    tckd = (_kl_rows(b_t, torch.log(b_t.clamp_min(1e-12)), torch.log(b_s.clamp_min(1e-12))) * scale).mean()
    log_nt_s = F.log_softmax(student_logits / tau - 1000.0 * gt_mask, dim=1)
    log_nt_t = F.log_softmax(teacher_logits / tau - 1000.0 * gt_mask, dim=1)
    nckd = (_kl_rows(log_nt_t.exp(), log_nt_t, log_nt_s) * scale).mean()
    return alpha * tckd + beta * nckd


def pearson_correlation(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Row-wise Pearson correlation ``[N]``: cosine similarity of the mean-centred rows, eps in the denominator (DIST)."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(student_logits: Tensor, teacher_logits: Tensor, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0) -> Tensor:
    """DIST (Huang et al. 2022): τ²·(β·inter + γ·intra) on Y = softmax(z/τ), as hunto's ``DIST``.

    inter = 1 − mean over samples of the Pearson correlation of a sample's class probabilities;
    intra = 1 − mean over classes of the Pearson correlation of a class's probabilities across the batch.
    """
    y_s = F.softmax(student_logits / temperature, dim=1)
    y_t = F.softmax(teacher_logits / temperature, dim=1)
    inter = 1.0 - pearson_correlation(y_s, y_t).mean()
    intra = 1.0 - pearson_correlation(y_s.t(), y_t.t()).mean()
    return temperature**2 * (beta * inter + gamma * intra)


def attention_map(feature: Tensor, p: int = 2) -> Tensor:
    """Zagoruyko & Komodakis 2017: L2-normalised flattened channel mean of |F|^p."""
    return F.normalize(feature.pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(student_feature: Tensor, teacher_feature: Tensor, p: int = 2) -> Tensor:
    """mean((at(F_s) − at(F_t))²), RepDistiller/mdistiller ``at_loss`` for one stage.

    The feature with the larger spatial map is adaptive-avg-pooled (before the power) to the other's
    size; RepDistiller compares heights and pools to a square, which is the same for square maps.
    """
    hs, ht = (student_feature.shape[-2], student_feature.shape[-1]), (teacher_feature.shape[-2], teacher_feature.shape[-1])
    if hs[0] * hs[1] > ht[0] * ht[1]:
        student_feature = F.adaptive_avg_pool2d(student_feature, ht)
    elif ht[0] * ht[1] > hs[0] * hs[1]:
        teacher_feature = F.adaptive_avg_pool2d(teacher_feature, hs)
    return (attention_map(student_feature, p) - attention_map(teacher_feature, p)).pow(2).mean()


@torch.no_grad()
def bake_soft_targets(features: Tensor, logits: Tensor, omega: float = 0.5, temperature: float = 4.0) -> Tensor:
    """BAKE (Ge et al. 2021): soft targets propagated through the in-batch affinity, closed form.

    f̂ = normalise(f); Â = softmax_row(f̂f̂ᵀ − 1e9·I); q = (1−ω)(I−ωÂ)⁻¹ · softmax(z/τ).
    """
    n = features.shape[0]
    eye = torch.eye(n, device=features.device, dtype=torch.float32)
    normed = F.normalize(features.float().flatten(1), dim=1)
    affinity = F.softmax(normed @ normed.t() - 1e9 * eye, dim=1)
    propagation = (1.0 - omega) * torch.linalg.inv(eye - omega * affinity)
    return propagation @ F.softmax(logits.float() / temperature, dim=1)


def accuracy_counts(logits: Tensor, target: Tensor, topk: tuple[int, ...] = (1, 5)) -> list[Tensor]:
    """Number of samples whose label is among the top-k logits, for each k (clipped to the class count)."""
    k_max = min(max(topk), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices
    hits = top.eq(target[:, None])
    return [hits[:, : min(k, k_max)].any(dim=1).sum() for k in topk]
