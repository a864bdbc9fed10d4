"""``deepinversion``: Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020.

Images are synthesised from noise by optimising the pixels themselves (Eqs. 2-5)::

    CE(T(x̂), y) + r_feature·Σ_l s_l(‖μ_l(x̂) − μ_l^BN‖₂ + ‖σ²_l(x̂) − σ²_l^BN‖₂) + tv_l2·R_TV(x̂) + l2·‖x̂‖₂

with s_1 = ``first_bn_multiplier`` and s_l = 1 for the other BatchNorm layers, a random circular jitter
and flip of the image each iteration, Adam with a cosine learning rate after a 5 % warm-up, and pixels
clipped to the valid image range, as NVlabs' ``deepinversion.py``. Adaptive DeepInversion (Eq. 8) adds
``competition_scale``·(1 − JS(student ‖ teacher)) at τ 3 so that images on which the student disagrees
with the teacher are preferred; 0 (the default) turns it off as in the official runs without ADI. The
student then learns by KD (τ 3) on the synthesised images.

The synthesis budget is explicit, as the paper states it: ``pool_size`` images are synthesised once,
``inversion_iterations`` Adam steps each (a fresh optimiser per batch of ``inversion_batch_size``, as
the official code resets it), and the student is then trained over that pool. The pool is filled one
batch per training step over the first steps (so progress, pause and cancel keep working), the student
learning from what is filled so far; after that no image is synthesised again. Every step the student
learns on ``batch_size`` pool images under the inversion's own jitter and flip. Synthesis costs
``pool_size × inversion_iterations`` teacher forward/backward passes per image: the paper's budget
(``preset: "paper"``: 2,000 iterations per batch of 256, the official CIFAR script's ``--bs 256
--iters_mi 2000``, and a pool the size of CIFAR-10's training set, 50,000 images; the papers do not
state one smaller) takes GPU-days on CPU. The defaults (1,024 images × 150 iterations) are sized so a
6-epoch job on a 10-class 32-px ResNet-18 teacher finishes within 15 minutes on 2 CPU cores.

Defaults are the official ImageNet ones (NVlabs/DeepInversion, ``deepinversion.py``): r_feature 0.05,
first_bn_multiplier 10, tv_l2 1e-4, l2 1e-5 (mean per-image norm), lr 0.2, betas (0.5, 0.9), jitter 30
(for 224-px images), flips (turn off for digits and text), 2000 iterations (setting 1), and the
lowest-loss iterate is kept (``keep_best``: as the official code, the iterate after the step whose
loss was lowest; tracked on the device, so no host sync per iteration). Presets:
- ``scaled``: the ImageNet setting with the jitter in proportion to the input, 30·side/224 (4 px at 32).
- ``cifar``: the official CIFAR-10 script ("parameters from the paper", ``cifar10/README.md``):
  r_feature 10, Adam lr 0.05 with betas (0.9, 0.999) and a constant lr, tv_l2 2.5e-5, l2 0,
  first_bn_multiplier 1, jitter 2, no flips. Still different from that script: pixels are clipped
  to the valid range (it does not clip), and the kept iterate is the lowest-loss one (its
  ``best_inputs = inputs.data`` aliases the pixels, so it ends with the last iterate).
On a 16-px digits teacher the ImageNet coefficients with jitter 2 and no flips inverted far better
than ``cifar`` (teacher accuracy on the targets 1.0 against 0.06 after 150 iterations).
- ``paper``: the ``cifar`` setting at the paper's full budget (see above).

Deviations: pixels are optimised in the teacher's normalised input space (as the official code does)
and mapped to [0,1] through the teacher's own mean/std; the pool stores images as uint8, like the
official JPEG files, which keeps checkpoints small.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.losses import kd_loss
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method

ADI_TEMPERATURE = 3.0
IMAGENET_JITTER, IMAGENET_SIDE = 30, 224
CIFAR_SETTING: dict[str, Any] = {
    "r_feature": 10.0,
    "first_bn_multiplier": 1.0,
    "lr": 0.05,
    "beta1": 0.9,
    "beta2": 0.999,
    "lr_schedule": "constant",
    "tv_l2": 2.5e-5,
    "l2": 0.0,
    "jitter": 2,
    "flip": False,
}
PAPER_BUDGET: dict[str, Any] = {"inversion_iterations": 2000, "inversion_batch_size": 256, "pool_size": 50_000}


class DeepInversionHyperparams(Hyperparams):
    r_feature: float = Field(default=0.05, ge=0.0, description="weight of the BatchNorm statistics matching term")
    first_bn_multiplier: float = Field(default=10.0, ge=0.0, description="extra scale s_1 of the first BatchNorm layer")
    tv_l2: float = Field(default=1e-4, ge=0.0, description="weight of the L2 total-variation prior")
    l2: float = Field(default=1e-5, ge=0.0, description="weight of the mean per-image L2 norm")
    lr: float = Field(default=0.2, gt=0.0, le=10.0, description="Adam learning rate for the pixels")
    beta1: float = Field(default=0.5, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.9, ge=0.0, lt=1.0)
    jitter: Annotated[int, Field(ge=0, le=1024)] | Literal["scaled"] = Field(
        default=IMAGENET_JITTER, description="largest random roll in pixels per iteration; 'scaled': 30·side/224, the ImageNet jitter in proportion"
    )
    flip: bool = True
    competition_scale: float = Field(default=0.0, ge=0.0, description="ADI competition weight; 0 is plain DeepInversion (paper's ADI: 0.2)")
    inversion_iterations: int = Field(default=150, ge=1, le=100_000, description="Adam steps per synthesised batch (paper: 2000)")
    pool_size: int = Field(default=1024, ge=1, le=10_000_000, description="images synthesised once, then the student trains over them")
    inversion_batch_size: int | None = Field(
        default=None, ge=1, le=65_536, description="images inverted together (their BatchNorm statistics are matched jointly); default the training batch"
    )
    lr_schedule: Literal["cosine", "constant"] = Field(
        default="cosine", description="the ImageNet code's cosine after a 5 % warm-up, or the CIFAR code's constant lr"
    )
    keep_best: bool = Field(default=True, description="keep the lowest-loss iterate, as the official code; false keeps the last")
    kd_temperature: float = Field(default=3.0, gt=0.0, le=100.0)
    steps_per_epoch: int = Field(default=50, ge=1, le=100_000)

    presets = {
        "scaled": {"jitter": "scaled"},
        "cifar": CIFAR_SETTING,
        "paper": {**CIFAR_SETTING, **PAPER_BUDGET},
    }

    def batches(self, default_batch: int) -> tuple[int, int]:
        """``(images per inverted batch, inverted batches)`` that cover ``pool_size``."""
        size = min(self.inversion_batch_size or default_batch, self.pool_size)
        return size, -(-self.pool_size // size)


def scaled_jitter(side: int) -> int:
    """The ImageNet jitter (30 px at 224) in proportion to an input side, at least 1 px."""
    return max(1, round(IMAGENET_JITTER * side / IMAGENET_SIDE))


def batchnorm_statistics_distance(inputs: Tensor, norm: nn.BatchNorm2d) -> Tensor:
    """‖σ²_BN − σ²(x)‖₂ + ‖μ_BN − μ(x)‖₂ over the channels of a BatchNorm's input (biased variance, as official)."""
    x = inputs.float()
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    return torch.linalg.vector_norm(norm.get_buffer("running_var") - var) + torch.linalg.vector_norm(norm.get_buffer("running_mean") - mean)


class BatchNormMatching:
    """Forward hooks on a model's BatchNorm2d layers that record each layer's statistics distance (Eq. 4)."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None]
        self.distances: list[Tensor] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _record(self, module: nn.Module, inputs: tuple[Tensor, ...], _: Tensor) -> None:
        assert isinstance(module, nn.BatchNorm2d)  # hooked on those alone
        self.distances.append(batchnorm_statistics_distance(inputs[0], module))

    def __enter__(self) -> BatchNormMatching:
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def loss(self, first_multiplier: float) -> Tensor:
        """Σ_l s_l·distance_l of the last forward pass (s_1 = ``first_multiplier``), then forget it."""
        distances, self.distances = self.distances, []
        return sum((d * (first_multiplier if i == 0 else 1.0) for i, d in enumerate(distances)), torch.zeros(()))


def total_variation_l2(images: Tensor) -> Tensor:
    """Sum of the L2 norms of horizontal, vertical and both diagonal pixel differences (official ``loss_var_l2``)."""
    diffs = (
        images[:, :, :, :-1] - images[:, :, :, 1:],
        images[:, :, :-1, :] - images[:, :, 1:, :],
        images[:, :, 1:, :-1] - images[:, :, :-1, 1:],
        images[:, :, :-1, :-1] - images[:, :, 1:, 1:],
    )
    return sum((torch.linalg.vector_norm(d) for d in diffs), torch.zeros((), device=images.device))


def competition_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = ADI_TEMPERATURE) -> Tensor:
    """ADI Eq. 8 as official: 1 − clamp(JS(P_s, P_t)), probabilities clamped to [0.01, 0.99]; 0 when they disagree fully."""
    p = F.softmax(student_logits / temperature, dim=1)
    q = F.softmax(teacher_logits / temperature, dim=1)
    m = (0.5 * (p + q)).clamp(0.01, 0.99)
    p, q = p.clamp(0.01, 0.99), q.clamp(0.01, 0.99)
    js = 0.5 * F.kl_div(p.log(), m, reduction="batchmean") + 0.5 * F.kl_div(q.log(), m, reduction="batchmean")
    return 1.0 - js.clamp(0.0, 1.0)


class LowestLossIterate:
    """The official ``best_inputs``: the pixels after the step whose loss was lowest, tracked on the device (no host sync)."""

    def __init__(self, pixels: Tensor) -> None:
        self.pixels = pixels.detach().clone()
        self.loss = torch.full((), math.inf, device=pixels.device)

    def offer(self, loss: Tensor, pixels: Tensor) -> None:
        better = loss.detach() < self.loss
        self.loss = torch.where(better, loss.detach(), self.loss)
        self.pixels = torch.where(better, pixels.detach(), self.pixels)


def balanced_targets(count: int, num_classes: int) -> Tensor:
    """Classes in shuffled rounds so each appears as evenly as possible (official CIFAR: 0..9 repeated)."""
    rounds = -(-count // num_classes)
    return torch.cat([torch.randperm(num_classes) for _ in range(rounds)])[:count]


def cosine_with_warmup(base_lr: float, iteration: int, warmup: int, total: int) -> float:
    """Official ``lr_cosine_policy``: linear warm-up, then cosine decay to zero."""
    if iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (iteration - warmup) / max(1, total - warmup))) * base_lr


@register_method
class DeepInversion(Distiller[DeepInversionHyperparams]):
    name = "deepinversion"
    family = "data-free"
    summary = "Invert the teacher: optimise noise into images whose BatchNorm statistics match the teacher's, then distil on them."
    paper = "Yin, Molchanov, Alvarez, Li, Mallya, Hoiem, Jha, Kautz. Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion. CVPR 2020. arXiv:1912.08795"
    code = "https://github.com/NVlabs/DeepInversion/blob/master/deepinversion.py"
    teacher_count = (1, 1)
    needs_dataset = False
    needs_batchnorm_statistics = True
    rank_local_buffers = ("pool_images", "syntheses")
    Hyperparams = DeepInversionHyperparams
    pool_images: Tensor
    syntheses: Tensor

    def __init__(self, student: Student, teachers: Teachers, hparams: DeepInversionHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        pre = teachers[0].net.preprocess
        self.inversion_batch, self.inversion_batches = hparams.batches(context.batch_size)
        capacity = self.inversion_batch * self.inversion_batches
        self.register_buffer("pool_images", torch.zeros(capacity, pre.channels, pre.height, pre.width, dtype=torch.uint8))
        self.register_buffer("syntheses", torch.zeros((), dtype=torch.long))
        self._synthesised: int | None = None  # host copy of ``syntheses``: no device sync per step
        self.last_bn_loss = 0.0
        self.last_teacher_accuracy = 0.0

    @classmethod
    def synthesis_images(cls, hparams: DeepInversionHyperparams, batch_size: int, total_steps: int) -> int:
        size, batches = hparams.batches(batch_size)
        return size * batches * hparams.inversion_iterations

    def jitter_pixels(self) -> int:
        jitter, pre = self.hparams.jitter, self.teacher().preprocess
        return scaled_jitter(max(pre.height, pre.width)) if jitter == "scaled" else jitter

    def _jitter(self, pixels: Tensor) -> Tensor:
        hp = self.hparams
        if jitter := self.jitter_pixels():
            dx, dy = torch.randint(-jitter, jitter + 1, (2,)).tolist()
            pixels = torch.roll(pixels, shifts=(dx, dy), dims=(2, 3))
        if hp.flip and torch.rand(()).item() < 0.5:
            pixels = torch.flip(pixels, dims=(3,))
        return pixels

    def synthesise(self) -> tuple[Tensor, Tensor]:
        """Invert one batch: ``(images in [0,1], targets)``; records the BN loss and teacher accuracy reached."""
        hp = self.hparams
        teacher = self.teacher()
        pre = teacher.preprocess
        mean, std = pre.get_buffer("mean"), pre.get_buffer("std")
        targets = balanced_targets(self.inversion_batch, self.context.num_classes).to(mean.device)
        pixels = torch.randn(self.inversion_batch, pre.channels, pre.height, pre.width).to(mean.device).requires_grad_()
        low, high = -mean / std, (1.0 - mean) / std
        optimizer = torch.optim.Adam([pixels], lr=hp.lr, betas=(hp.beta1, hp.beta2))
        warmup = max(1, hp.inversion_iterations // 20)
        best = LowestLossIterate(pixels)
        student_was_training = self.student.training
        self.student.eval()
        with torch.enable_grad(), BatchNormMatching(teacher.net.model) as matching:
            for iteration in range(hp.inversion_iterations):
                if hp.lr_schedule == "cosine":
                    optimizer.param_groups[0]["lr"] = cosine_with_warmup(hp.lr, iteration, warmup, hp.inversion_iterations)
                jittered = self._jitter(pixels)
                logits = teacher(jittered * std + mean).float()
                loss = (
                    F.cross_entropy(logits, targets)
                    + hp.r_feature * matching.loss(hp.first_bn_multiplier).to(logits.device)
                    + hp.tv_l2 * total_variation_l2(jittered)
                    + hp.l2 * torch.linalg.vector_norm(jittered.flatten(1), dim=1).mean()
                )
                if hp.competition_scale > 0:
                    loss = loss + hp.competition_scale * competition_loss(self.student(jittered * std + mean).float(), logits)
                (pixels.grad,) = torch.autograd.grad(loss, [pixels])
                optimizer.step()
                with torch.no_grad():
                    pixels.clamp_(low, high)
                best.offer(loss, pixels)
            with torch.no_grad():
                images = ((best.pixels if hp.keep_best else pixels) * std + mean).clamp(0.0, 1.0)
                predicted = teacher(images).argmax(dim=1)
                self.last_bn_loss = float(matching.loss(hp.first_bn_multiplier))
        self.last_teacher_accuracy = float((predicted == targets).float().mean())
        self.student.train(student_was_training)
        return images, targets

    def _synthesised_batches(self) -> int:
        """Batches inverted so far: read from the (checkpointed) buffer once, after any resume, then counted on the host."""
        if self._synthesised is None:
            self._synthesised = int(self.syntheses)
        return self._synthesised

    def _fill_pool(self) -> None:
        images, _ = self.synthesise()
        size, count = self.inversion_batch, self._synthesised_batches()
        self.pool_images[count * size : (count + 1) * size] = (images * 255.0).round().to(torch.uint8)
        self._synthesised = count + 1
        self.syntheses.fill_(self._synthesised)

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        hp = self.hparams
        if self._synthesised_batches() < self.inversion_batches:
            self._fill_pool()
        filled = min(self._synthesised_batches() * self.inversion_batch, hp.pool_size)
        picked = torch.randint(filled, (self.context.batch_size,)).to(self.pool_images.device)
        images = self._jitter(self.pool_images[picked].float().div_(255.0))
        with torch.no_grad():
            teacher_logits = self.teacher()(images).float()
        logits = self.student(images)
        return with_total(logits, {"kd": kd_loss(logits.float(), teacher_logits, hp.kd_temperature)})

    def signals(self) -> dict[str, float]:
        return {"bn_loss": self.last_bn_loss, "teacher_accuracy": self.last_teacher_accuracy}

    def method_state(self) -> dict[str, Any]:
        return {"last_bn_loss": self.last_bn_loss, "last_teacher_accuracy": self.last_teacher_accuracy}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.last_bn_loss = float(state.get("last_bn_loss", 0.0))
        self.last_teacher_accuracy = float(state.get("last_teacher_accuracy", 0.0))
