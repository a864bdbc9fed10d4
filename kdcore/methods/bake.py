"""``bake``: Ge et al. 2021, "Self-distillation with Batch Knowledge Ensembling Improves ImageNet Classification".

No teacher: each image's soft target is the student's own temperature-softened prediction
propagated through the in-batch affinity of its pre-logit pooled features, in closed form
q = (1−ω)(I−ωÂ)⁻¹·softmax(z/τ) (``kdcore.losses.bake_soft_targets``, no gradient). The loss is
CE + weight·τ²·KL(q ‖ softmax(z/τ)), summed over classes and averaged over the batch, exactly as
the official ``KDLoss`` (``KLDivLoss(reduction="sum")·τ²/N``) in yxgeee/BAKE.

Propagation needs similar images in the batch, so batches are class-balanced: each of N anchors
brings M other images of its class (``ClassBalancedBatchPlan``). As in the official samplers every
image is an anchor once per epoch, so an epoch has len(data)/N steps: (M+1)× the images of a plain
epoch. ``intra_imgs`` M defaults to 1 (the paper's ImageNet setting and official ImageNet configs);
the official small-scale script defaults to M=3, used for CIFAR-100 and CUB-200 (with ω 0.5), while
TinyImageNet and Stanford Dogs use M=1 with ω 0.9.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from kdcore.data.augment import seeded_generator
from kdcore.data.loader import Batch, BatchPlan, epoch_order
from kdcore.errors import BadSpec
from kdcore.losses import bake_soft_targets
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method
from kdcore.models.preprocess import PreprocessedModel

PARTNER_STREAM = 3  # the loader draws epoch orders from stream 1 and augmentations from stream 2


class BAKEHyperparams(Hyperparams):
    omega: float = Field(default=0.5, ge=0.0, lt=1.0, description="ensembling weight ω")
    temperature: float = Field(default=4.0, gt=0.0, le=100.0)
    weight: float = Field(default=1.0, ge=0.0, description="weight of the τ²·KL term (official 'lamda')")
    intra_imgs: int = Field(default=1, ge=0, le=31, description="M: same-class images each anchor brings into its batch")


class ClassBalancedBatchPlan(BatchPlan):
    """Batches of N = batch_size // (M+1) anchors followed by M same-class images per anchor.

    Anchors run through a permutation of the dataset, each once per epoch (yxgeee/BAKE
    ``IdentityBatchSampler`` / ``DistributedClassSampler``). An anchor's M partners are the next M
    members of its class in a random cyclic order of that class, which draws them uniformly without
    replacement and never the anchor itself unless its class has ≤ M members (then they repeat,
    where the official sampler draws with replacement). All draws depend only on (seed, epoch).
    """

    def __init__(self, labels: Tensor, batch_size: int, seed: int, intra_imgs: int) -> None:
        super().__init__(labels, batch_size, seed)
        self.intra_imgs = intra_imgs
        self.anchors_per_batch = max(1, batch_size // (intra_imgs + 1))

    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // self.anchors_per_batch)

    def same_class_partners(self, epoch: int) -> Tensor:
        """``[len(labels), M]``: for every item, the M images of its class that join it in a batch."""
        labels = self.labels.long()
        count = len(labels)
        shuffled = torch.randperm(count, generator=seeded_generator(self.seed, epoch, PARTNER_STREAM))
        by_class = shuffled[torch.argsort(labels[shuffled], stable=True)]
        sizes = torch.bincount(labels)
        starts = torch.cumsum(sizes, 0) - sizes
        position = torch.empty(count, dtype=torch.long)
        position[by_class] = torch.arange(count)
        start, size = starts[labels], sizes[labels]
        steps = torch.arange(1, self.intra_imgs + 1)
        return by_class[start[:, None] + (position - start)[:, None].add(steps).remainder(size[:, None])]

    def rank_positions(self, batch_len: int, rank: int, ranks: int) -> Tensor:
        """A rank's share: its slice of the anchors with their partners, whole groups as in the official ``DistributedClassSampler``."""
        anchors = batch_len // (self.intra_imgs + 1)
        if anchors % ranks:
            raise BadSpec(
                f"bake's {anchors} anchors per batch do not split evenly over {ranks} ranks; make training.batch_size a multiple of {ranks * (self.intra_imgs + 1)}"
            )
        own = torch.arange(rank * anchors // ranks, (rank + 1) * anchors // ranks)
        partners = anchors + (own[:, None] * self.intra_imgs + torch.arange(self.intra_imgs)).flatten()
        return torch.cat([own, partners])

    def batches(self, epoch: int) -> list[Tensor]:
        anchors = epoch_order(len(self.labels), self.seed, epoch)
        partners = self.same_class_partners(epoch)
        size = min(self.anchors_per_batch, len(anchors))
        chosen = [anchors[i * size : (i + 1) * size] for i in range(self.steps_per_epoch())]
        return [torch.cat([group, partners[group].flatten()]) for group in chosen]


def pooled_features_and_logits(student: PreprocessedModel, images: Tensor) -> tuple[Tensor, Tensor]:
    """The pre-logit pooled features (what the official networks return beside the logits) and the logits."""
    model: Any = student.model  # timm's or kdcore's: forward_head and forward_features / forward_intermediates
    x = student.preprocess(images)
    final = model.forward_features(x) if hasattr(model, "forward_features") else model.forward_intermediates(x)[0]
    return model.forward_head(final, pre_logits=True), model.forward_head(final)


@register_method
class BAKE(Distiller[BAKEHyperparams]):
    name = "bake"
    family = "self (batch ensembling)"
    summary = "Self-distillation to soft targets ensembled from similar images of the same batch, with class-balanced batches."
    paper = "Ge, Lu, Wang, Li, Zhu. Self-distillation with Batch Knowledge Ensembling Improves ImageNet Classification. 2021. arXiv:2104.13298"
    code = "https://github.com/yxgeee/BAKE/blob/main/small_scale/train.py"
    teacher_count = (0, 0)
    Hyperparams = BAKEHyperparams

    def __init__(self, student: Student, teachers: Teachers, hparams: BAKEHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        model = getattr(student, "model", None)
        if (
            not isinstance(student, PreprocessedModel)
            or not hasattr(model, "forward_head")
            or not (hasattr(model, "forward_features") or hasattr(model, "forward_intermediates"))
        ):
            raise BadSpec("bake reads the student's pre-logit pooled features through forward_head(pre_logits=True); use a timm or kdcore architecture")

    @classmethod
    def batch_plan(cls, hparams: BAKEHyperparams, labels: Tensor, batch_size: int, seed: int) -> BatchPlan:
        return ClassBalancedBatchPlan(labels, batch_size, seed, hparams.intra_imgs)

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        assert batch is not None
        hp = self.hparams
        features, logits = pooled_features_and_logits(self.student, batch.images)
        targets = bake_soft_targets(features.detach(), logits.detach(), hp.omega, hp.temperature)
        log_probs = F.log_softmax(logits.float() / hp.temperature, dim=1)
        kd = F.kl_div(log_probs, targets, reduction="batchmean") * hp.temperature**2
        return with_total(logits, {"ce": F.cross_entropy(logits.float(), batch.labels), "kd": hp.weight * kd})
