"""``datafree_generative``: Luo et al. 2020, "Large-Scale Generative Data-Free Distillation" (seed 004).

No data: a label-conditioned generator G(z|y) learns to produce images the frozen teacher accepts,
trained with the inceptionism loss CE(T(G(z|y)), y) + λ_tv·L_tv + λ_ℓ2·L_ℓ2 plus the moment-matching
loss λ_bn·Σ_l(‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂), which ties the batch statistics at the input of every
teacher BatchNorm to its running statistics. The student learns by KD(T(x) ‖ S(x)) on those images.

Two schedules. The default (``generator_steps`` 0) shares the step budget: each training step makes
one generator update with its own Adam optimizer, then the student's KD loss on the same (detached)
images. ``preset: "two_phase"`` (or any ``generator_steps`` > 0) runs the seed's order, "first train
the generator, then distil the student": the first training step makes ``generator_steps``
generator-only updates, after which the generator is frozen and
every step distils on a fresh batch drawn from it. A resumed run skips the updates it already made;
pause and cancel take effect once that first step ends. Either way the generator objective never
involves the student. ``generators`` > 1 splits the classes into that many contiguous groups,
one generator each (the seed's ensemble; with one per class, y is constant), all matched to the
teacher's global statistics: the seed's per-class "meta-data" statistics are not available here.

The seed gives the losses and the generator's layout but no weights or optimizer settings, and
the official release (google-research/data_free_distillation) holds only the generator. Chosen
here: CE weight 1 and λ_bn 1 (with λ_bn 10, the BN/CE ratio of Fang et al.'s CMI/Fast code, the
moment term swamps CE and the teacher's accuracy on the sampled labels stays at chance in short
runs), λ_tv 1e-4 and λ_ℓ2 1e-5 with DeepInversion's forms (norms over the batch of neighbour
differences and of the centred image), Adam lr 1e-3 β(0.5, 0.999), KD at τ 1 (the seed's plain KL).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, cast

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from kdcore.data.loader import Batch
from kdcore.errors import BadTeacher
from kdcore.losses import kd_loss
from kdcore.methods._generator_step import step_generator
from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, Student, Teachers, with_total
from kdcore.methods.registry import register_method

SMALL_IMAGE_MAX_SIDE = 64
TWO_PHASE_GENERATOR_STEPS = 1000  # the seed gives no count: a CPU-sized budget, stated like every other one


class DataFreeGenerativeHyperparams(Hyperparams):
    generators: int = Field(default=1, ge=1, le=1000, description="1, or one generator per class group (at most one per class)")
    steps_per_epoch: int = Field(default=50, ge=1, le=100_000, description="generated batches per epoch")
    generator_lr: float = Field(default=1e-3, gt=0.0, le=1.0)
    bn_weight: float = Field(default=1.0, ge=0.0, description="λ_bn: BatchNorm moment matching")
    tv_weight: float = Field(default=1e-4, ge=0.0, description="λ_tv: total variation")
    l2_weight: float = Field(default=1e-5, ge=0.0, description="λ_ℓ2: image norm")
    temperature: float = Field(default=1.0, gt=0.0, le=100.0, description="KD temperature for the student")
    generator_steps: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="generator-only updates before the student's first step, then the generator is frozen; 0 trains both every step",
    )

    presets = {"two_phase": {"generator_steps": TWO_PHASE_GENERATOR_STEPS}}


class ConditionalGenerator(nn.Module):
    """Seed 004's generator (the official ``simple_generator``): Linear([z, onehot(y)]) → reshape → BN →
    LeakyReLU → (nearest ×2 upsample → 3×3 conv → BN → LeakyReLU)×k → 3×3 conv → Tanh, mapped to [0,1].

    Small images (side ≤ 64): latent 1024, k=2, widths 128 then 64 (CIFAR table). Large: latent 512,
    width 64, k so that the first map is at most 8 px (7×7 for 224, the ImageNet table). The conv
    BatchNorms keep the official eps 0.8 (inherited from DAFL). The official output BatchNorm after
    Tanh is left out: our teachers take [0,1] images and normalise them themselves. The one-hot's
    columns of the first Linear start √latent times larger than the default init, so y carries as
    much variance as z: otherwise the label is drowned by 1024 noise dimensions and the teacher's
    CE on the sampled labels barely moves in a short run (measured: chance accuracy after 200 steps).
    """

    def __init__(self, num_classes: int, image_size: tuple[int, int, int]) -> None:
        super().__init__()
        channels, height, width = image_size
        side = max(height, width)
        small = side <= SMALL_IMAGE_MAX_SIDE
        self.num_classes = num_classes
        self.latent_dim = 1024 if small else 512
        ups = 2 if small else max(1, math.ceil(math.log2(side / 8)))
        widths = [128, 64] if small else [64] * ups
        self.image_hw = (height, width)
        self.start_hw = (math.ceil(height / 2**ups), math.ceil(width / 2**ups))
        self.project = nn.Linear(self.latent_dim + num_classes, widths[0] * self.start_hw[0] * self.start_hw[1], bias=False)
        with torch.no_grad():
            self.project.weight[:, self.latent_dim :] *= math.sqrt(self.latent_dim)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.LeakyReLU(0.2)]
        for in_chs, out_chs in zip(widths[:1] + widths[:-1], widths, strict=True):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_chs, eps=0.8),
                nn.LeakyReLU(0.2),
            ]
        layers += [nn.Conv2d(widths[-1], channels, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        """Images in [0,1] for latents ``z`` and (group-local) labels."""
        x = self.project(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1))
        x = self.body(x.view(len(z), -1, *self.start_hw))
        if tuple(x.shape[-2:]) != self.image_hw:
            x = F.interpolate(x, size=self.image_hw, mode="bilinear", align_corners=False)
        return (x + 1) / 2


class GeneratorGroups(nn.ModuleList):
    """One generator per contiguous group of classes; ``forward`` sends each label to its group's generator.

    One module with one ``forward``, so all generators train as one DistributedDataParallel module
    on several ranks (a group may be absent from one rank's batch: DDP then counts it unused there).
    """

    def __init__(self, sizes: list[int], image_size: tuple[int, int, int]) -> None:
        super().__init__(ConditionalGenerator(size, image_size) for size in sizes)
        self.group_starts = [sum(sizes[:i]) for i in range(len(sizes))]

    def __iter__(self) -> Iterator[ConditionalGenerator]:
        return cast(Iterator[ConditionalGenerator], super().__iter__())

    @property
    def latent_dim(self) -> int:
        """The one latent size of every group's generator (it depends on the image size alone)."""
        return next(iter(self)).latent_dim

    def forward(self, latents: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """``(labels, images)``, labels regrouped in the order the images come out."""
        chosen_labels, images = [], []
        for start, generator in zip(self.group_starts, self, strict=True):
            chosen = ((labels >= start) & (labels < start + generator.num_classes)).nonzero().squeeze(1)
            if len(chosen):
                chosen_labels.append(labels[chosen])
                images.append(generator(latents[chosen], labels[chosen] - start))
        return torch.cat(chosen_labels), torch.cat(images)


def batchnorm_moment_distance(inputs: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """‖μ(x) − μ̂‖₂ + ‖σ²(x) − σ̂²‖₂ over channels, with the batch statistics of a BN input ``[N,C,H,W]``."""
    x = inputs.float()
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    return torch.linalg.vector_norm(mean - running_mean) + torch.linalg.vector_norm(var - running_var)


class BatchNormMoments:
    """While open, each ``nn.BatchNorm2d`` of ``model`` records the moment distance of its input."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.distances: list[Tensor] = []
        self._handles: list[Any] = []

    def __enter__(self) -> BatchNormMoments:
        self.distances = []
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _record(self, module: nn.BatchNorm2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.distances.append(batchnorm_moment_distance(inputs[0], module.get_buffer("running_mean"), module.get_buffer("running_var")))

    def loss(self) -> Tensor:
        return torch.stack(self.distances).sum()


def image_priors(images: Tensor) -> tuple[Tensor, Tensor]:
    """DeepInversion's total variation (norms of the four neighbour differences) and ℓ2 norm, on x ∈ [−1,1]."""
    x = images * 2 - 1
    differences = (
        x[..., :, :-1] - x[..., :, 1:],
        x[..., :-1, :] - x[..., 1:, :],
        x[..., 1:, :-1] - x[..., :-1, 1:],
        x[..., :-1, :-1] - x[..., 1:, 1:],
    )
    return sum(torch.linalg.vector_norm(d) for d in differences), torch.linalg.vector_norm(x)


@register_method
class DataFreeGenerative(Distiller[DataFreeGenerativeHyperparams]):
    name = "datafree_generative"
    family = "data-free"
    summary = "Train a generator against the teacher's BatchNorm statistics, then distil on its images: no data needed."
    paper = "Luo, Sandler, Lin, Zhmoginov, Howard. Large-Scale Generative Data-Free Distillation. 2020. arXiv:2012.05578"
    code = "https://github.com/google-research/google-research/tree/master/data_free_distillation"
    teacher_count = (1, 1)
    needs_dataset = False
    needs_batchnorm_statistics = True
    self_stepped = ("generators",)
    Hyperparams = DataFreeGenerativeHyperparams
    generator_updates: Tensor

    def __init__(self, student: Student, teachers: Teachers, hparams: DataFreeGenerativeHyperparams, context: MethodContext) -> None:
        super().__init__(student, teachers, hparams, context)
        teacher_model = teachers[0].net.model
        self.moments = BatchNormMoments(teacher_model)
        if not self.moments.layers:
            raise BadTeacher("datafree_generative matches the teacher's BatchNorm statistics; this teacher has no BatchNorm2d layer")
        count = min(hparams.generators, context.num_classes)
        sizes = [context.num_classes // count + (i < context.num_classes % count) for i in range(count)]
        self.generators = GeneratorGroups(sizes, context.input_size)
        self.group_starts = self.generators.group_starts
        self.generator_optimizer = torch.optim.Adam(self.generators.parameters(), lr=hparams.generator_lr, betas=(0.5, 0.999))
        self.noise_seed = int(torch.randint(0, 2**62, (1,)))
        self.register_buffer("generator_updates", torch.zeros((), dtype=torch.long))  # checkpointed: a resume skips what is done

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The trainer steps the student only; the generators have their own optimizer."""
        return [p for p in self.student.parameters() if p.requires_grad]

    @classmethod
    def synthesis_images(cls, hparams: DataFreeGenerativeHyperparams, batch_size: int, total_steps: int) -> int:
        return batch_size * (hparams.generator_steps or total_steps)  # one backward through the teacher per generator update

    def generate(self, step: int) -> tuple[Tensor, Tensor]:
        """Labels drawn uniformly and their generated images; the draws depend only on the step and rank (exact resume)."""
        context = self.context
        rng = torch.Generator().manual_seed(self.noise_seed + step * context.world_size + context.rank)
        labels = torch.randint(0, context.num_classes, (context.batch_size,), generator=rng).to(context.device)
        latents = torch.randn(context.batch_size, self.generators.latent_dim, generator=rng).to(context.device)
        return self.data_parallel(self.generators)(latents, labels)

    def update_generator(self, step: int) -> dict[str, Tensor]:
        """One generator update on the batch drawn for ``step``; returns the images (detached), their labels and the losses."""
        hp = self.hparams
        labels, images = self.generate(step)
        with self.moments:
            teacher_logits = self.teacher()(images).float()
        batchnorm = self.moments.loss()
        total_variation, norm = image_priors(images)
        generator_loss = F.cross_entropy(teacher_logits, labels) + hp.bn_weight * batchnorm + hp.tv_weight * total_variation + hp.l2_weight * norm
        step_generator(self.generator_optimizer, generator_loss)
        return {
            "labels": labels,
            "images": images.detach(),
            "teacher_logits": teacher_logits.detach(),
            "generator_loss": generator_loss.detach(),
            "batchnorm": batchnorm.detach(),
        }

    def train_generator_first(self) -> dict[str, Tensor]:
        """The seed's first phase: the generator updates not yet made (all of them, unless resumed), the last one's losses returned."""
        done = int(self.generator_updates)
        last: dict[str, Tensor] = {}
        for update in range(done, self.hparams.generator_steps):
            last = self.update_generator(-1 - update)  # negative steps: draws of their own, apart from the student's
            self.generator_updates.fill_(update + 1)
        return last

    @torch.no_grad()
    def draw_frozen(self, step: int) -> dict[str, Tensor]:
        """The batch drawn for ``step`` from the generator as it stands, with the teacher's logits on it."""
        labels, images = self.generate(step)
        return {"labels": labels, "images": images, "teacher_logits": self.teacher()(images).float()}

    def forward(self, batch: Batch | None, info: StepInfo) -> dict[str, Tensor]:
        hp = self.hparams
        if hp.generator_steps == 0:
            drawn = self.update_generator(info.global_step)
        else:  # the first phase's losses (on the step that ran it), then a fresh batch from the frozen generator
            drawn = self.train_generator_first() | self.draw_frozen(info.global_step)
        logits = self.student(drawn["images"])
        teacher_logits = drawn["teacher_logits"]
        signals = {"teacher_accuracy": (teacher_logits.argmax(dim=1) == drawn["labels"]).float().mean()}
        if "generator_loss" in drawn:
            signals |= {"generator_loss": drawn["generator_loss"], "batchnorm_loss": drawn["batchnorm"]}
        return with_total(logits, {"kd": kd_loss(logits, teacher_logits, hp.temperature)}, **signals)

    def method_state(self) -> dict[str, Any]:
        return {"generator_optimizer": self.generator_optimizer.state_dict(), "noise_seed": self.noise_seed}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if "generator_optimizer" in state:
            self.generator_optimizer.load_state_dict(state["generator_optimizer"])
            self.noise_seed = int(state["noise_seed"])
