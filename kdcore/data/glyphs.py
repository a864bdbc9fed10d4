"""``glyphs`` and ``glyphs128``: built-in benchmarks hard enough to separate distillation methods, generated, not downloaded.

``digits`` is saturated (a small supervised student reaches 99.5%), so it cannot tell one method
from another. Here each class is a stroke glyph on a 3×3 grid of anchors; classes come in pairs
whose members differ only by a small dot in the glyph's colour. ``glyphs`` has 16 pairs and 200
training images per class; a small student trained alone for 30 epochs comes within a point of a
large teacher there, so ``glyphs128`` has 64 pairs and 50 training images per class, where it
stays about 10 points behind (``cifar_resnet8`` 83.8 and 83.5% on two seeds against
``cifar_resnet20``'s 93.5%, 30 epochs, measured before any distillation method ran on it). Its
first 16 pairs are ``glyphs``' classes: the class sequence depends on ``CLASS_SEED`` alone. Every image draws its own
anchor jitter, stroke width, affine transform (rotation, scale, shear, shift), textured background,
colours, Gaussian noise, and distractors in another colour: short strokes and a dot like the one
that tells a pair apart. Telling the pairs apart therefore takes shape, position relative to the
glyph and colour together, which is where a small network runs out of capacity.

Everything is a pure function of fixed seeds (classes from ``CLASS_SEED``, each split's images from
its own seed), so every machine generates the same bytes. The glyph set is checked to hold no two
classes that a horizontal flip (the ``flip_crop`` augmentation) maps onto each other. Rendering is
vectorised over images at 2× resolution and box-filtered to 32×32 (anti-aliasing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

CLASS_SEED = 20240611
SPLIT_SEEDS = {"train": 1, "val": 2}
SIZE = 32
SUPERSAMPLE = 1
RENDER_CHUNK = 256

GRID = (-0.6, 0.0, 0.6)
ANCHORS = torch.tensor([(x, y) for y in GRID for x in GRID])
EDGES = [(a, b) for a in range(9) for b in range(a + 1, 9) if abs(a // 3 - b // 3) <= 1 and abs(a % 3 - b % 3) <= 1]
MIRROR_ANCHOR = [3 * (a // 3) + 2 - a % 3 for a in range(9)]
DOT_SPOTS = torch.tensor([(x, y) for y in (-0.3, 0.3) for x in (-0.3, 0.3)] + [(0.0, -0.9), (0.0, 0.9), (-0.9, 0.0), (0.9, 0.0)])
MIN_STROKES, MAX_STROKES = 4, 6
DISTRACTOR_STROKES = 3
FAR = 10.0


@dataclass(frozen=True)
class GlyphSet:
    """One built-in glyph dataset: how many dot/no-dot pairs of classes, and images per class in each split."""

    pairs: int
    train_per_class: int
    val_per_class: int

    def per_class(self, split: str) -> int:
        return {"train": self.train_per_class, "val": self.val_per_class}[split]


GLYPH_SETS = {"glyphs": GlyphSet(pairs=16, train_per_class=200, val_per_class=50), "glyphs128": GlyphSet(pairs=64, train_per_class=50, val_per_class=25)}


@dataclass(frozen=True)
class GlyphClass:
    edges: tuple[tuple[int, int], ...]
    dot: int | None

    def mirrored(self) -> GlyphClass:
        edges = tuple(sorted(_ordered(MIRROR_ANCHOR[a], MIRROR_ANCHOR[b]) for a, b in self.edges))
        dot = None if self.dot is None else _mirrored_dot(self.dot)
        return GlyphClass(edges, dot)


def _ordered(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


def _mirrored_dot(spot: int) -> int:
    x, y = DOT_SPOTS[spot].tolist()
    return next(i for i, (u, v) in enumerate(DOT_SPOTS.tolist()) if math.isclose(u, -x, abs_tol=1e-6) and math.isclose(v, y, abs_tol=1e-6))


def _connected(edges: list[tuple[int, int]]) -> bool:
    nodes = {a for edge in edges for a in edge}
    reached, frontier = set(), [edges[0][0]]
    while frontier:
        node = frontier.pop()
        if node not in reached:
            reached.add(node)
            frontier += [b if a == node else a for a, b in edges if node in (a, b)]
    return reached == nodes


def _segment_distance(points: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """Distance from each point ``[P,2]`` to each segment ``[N,S,2]`` → ``[N,S,P]``."""
    direction = ends - starts
    relative = points[None, None] - starts[:, :, None]
    length2 = direction.pow(2).sum(-1, keepdim=True).clamp_min(1e-9)
    t = (relative * direction[:, :, None]).sum(-1) / length2
    nearest = starts[:, :, None] + t.clamp(0, 1)[..., None] * direction[:, :, None]
    return (points[None, None] - nearest).norm(dim=-1)


def glyph_classes(pairs: int) -> list[GlyphClass]:
    """``pairs`` connected stroke glyphs, each with and without a dot off its strokes; no class is another's mirror."""
    generator = torch.Generator().manual_seed(CLASS_SEED)
    classes: list[GlyphClass] = []
    while len(classes) < 2 * pairs:
        count = int(torch.randint(MIN_STROKES, MAX_STROKES + 1, (1,), generator=generator))
        picked = sorted(EDGES[i] for i in torch.randperm(len(EDGES), generator=generator)[:count].tolist())
        if not _connected(picked):
            continue
        starts, ends = (ANCHORS[[e[k] for e in picked]][None] for k in (0, 1))
        clearance = _segment_distance(DOT_SPOTS, starts, ends)[0].min(dim=0).values
        free = [i for i in range(len(DOT_SPOTS)) if clearance[i] > 0.25]
        if not free:
            continue
        pair = [GlyphClass(tuple(picked), None), GlyphClass(tuple(picked), free[int(torch.randint(len(free), (1,), generator=generator))])]
        taken = {c for known in classes for c in (known, known.mirrored())}
        if any(c in taken or c.mirrored() in taken for c in pair):
            continue
        classes += pair
    return classes


def _colours(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Background, glyph and distractor colours ``[N,3]``: glyph and distractor contrast with the background and differ from each other."""
    luminance = torch.tensor([0.299, 0.587, 0.114])
    background = torch.rand(n, 3, generator=generator)
    candidates = torch.rand(n, 16, 3, generator=generator)
    contrast = ((candidates - background[:, None]) @ luminance).abs()
    glyph = candidates[torch.arange(n), torch.where(contrast > 0.3, contrast, contrast - 1).argmax(1)]
    apart = (candidates - glyph[:, None]).norm(dim=-1)
    score = torch.where((contrast > 0.25) & (apart > 0.45), apart, apart - 10)
    return background, glyph, candidates[torch.arange(n), score.argmax(1)]


def _render(classes: list[GlyphClass], labels: Tensor, generator: torch.Generator) -> Tensor:
    n = len(labels)
    side = SIZE * SUPERSAMPLE
    axis = (torch.arange(side) + 0.5) / side * 2 - 1
    points = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    pixel = 2 / side
    edges = torch.full((len(classes), MAX_STROKES, 2), -1, dtype=torch.long)
    dots = torch.tensor([-1 if c.dot is None else c.dot for c in classes])
    for index, glyph_class in enumerate(classes):
        edges[index, : len(glyph_class.edges)] = torch.tensor(glyph_class.edges)
    anchors = ANCHORS + 0.06 * torch.randn(n, 9, 2, generator=generator)
    own = edges[labels]
    present = own[..., 0] >= 0
    starts = torch.where(present[..., None], anchors.gather(1, own[..., 0].clamp_min(0)[..., None].expand(-1, -1, 2)), FAR)
    ends = torch.where(present[..., None], anchors.gather(1, own[..., 1].clamp_min(0)[..., None].expand(-1, -1, 2)), FAR)
    dot = torch.where((dots[labels] >= 0)[:, None], DOT_SPOTS[dots[labels].clamp_min(0)] + 0.03 * torch.randn(n, 2, generator=generator), FAR)
    centre = torch.rand(n, DISTRACTOR_STROKES + 1, 2, generator=generator) * 1.8 - 0.9
    angle = torch.rand(n, DISTRACTOR_STROKES, generator=generator) * math.pi
    half = (0.1 + 0.15 * torch.rand(n, DISTRACTOR_STROKES, generator=generator))[..., None] * torch.stack([angle.cos(), angle.sin()], -1)
    d_starts, d_ends = centre[:, :DISTRACTOR_STROKES] - half, centre[:, :DISTRACTOR_STROKES] + half
    theta = (torch.rand(n, generator=generator) - 0.5) * math.radians(50)
    scale = 0.75 + 0.3 * torch.rand(n, 2, generator=generator)
    shear = (torch.rand(n, generator=generator) - 0.5) * 0.3
    rotation = torch.stack([torch.stack([theta.cos(), -theta.sin()], -1), torch.stack([theta.sin(), theta.cos()], -1)], -2)
    shape = torch.stack([torch.stack([scale[:, 0], shear * scale[:, 1]], -1), torch.stack([torch.zeros(n), scale[:, 1]], -1)], -2)
    affine, shift = rotation @ shape, (torch.rand(n, 1, 2, generator=generator) - 0.5) * 0.25

    def place(p: Tensor) -> Tensor:
        return torch.where(p >= FAR, p, p @ affine.transpose(1, 2) + shift)

    width = (0.08 + 0.05 * torch.rand(n, 1, 1, generator=generator)) / 2
    dot_radius = (0.11 + 0.03 * torch.rand(n, 1, generator=generator))[..., None]
    background, glyph_colour, distractor_colour = _colours(n, generator)
    grating = torch.rand(n, 3, generator=generator)
    direction = torch.rand(n, generator=generator) * 2 * math.pi
    wave = torch.stack([direction.cos(), direction.sin()], -1) * (1 + 3 * grating[:, :1]) * math.pi
    texture = torch.sin(points @ wave.T + grating[:, 1] * 2 * math.pi).T[:, None] * (0.08 + 0.12 * grating[:, 2:])[..., None]
    image = (background[..., None] + texture * (torch.rand(n, 3, 1, generator=generator) * 2 - 1)).clamp(0, 1)

    def coverage(distance: Tensor, radius: Tensor) -> Tensor:
        return ((radius - distance) / pixel + 0.5).clamp(0, 1).amax(dim=1)[:, None]

    stray = coverage(_segment_distance(points, place(d_starts), place(d_ends)), width)
    stray = torch.maximum(stray, coverage((points[None, None] - place(centre[:, -1:])[:, :, None]).norm(dim=-1), dot_radius))
    glyph = coverage(_segment_distance(points, place(starts), place(ends)), width)
    glyph = torch.maximum(glyph, coverage((points[None, None] - place(dot[:, None])[:, :, None]).norm(dim=-1), dot_radius))
    image = image * (1 - stray) + distractor_colour[..., None] * stray
    image = image * (1 - glyph) + glyph_colour[..., None] * glyph
    image = image + 0.03 * torch.randn(image.shape, generator=generator)
    image = F.avg_pool2d(image.reshape(n, 3, side, side), SUPERSAMPLE)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def generate_glyphs(split: str, name: str) -> tuple[Tensor, Tensor, list[str]]:
    """uint8 images ``[N,3,32,32]``, int64 labels and class names of ``split`` ('train' or 'val') of the glyph set ``name``."""
    glyph_set = GLYPH_SETS[name]
    classes = glyph_classes(glyph_set.pairs)
    generator = torch.Generator().manual_seed(SPLIT_SEEDS[split])
    labels = torch.arange(len(classes)).repeat_interleave(glyph_set.per_class(split))
    labels = labels[torch.randperm(len(labels), generator=generator)]
    images = torch.cat([_render(classes, part, generator) for part in labels.split(RENDER_CHUNK)])
    return images, labels, glyph_class_names(name)


def glyph_class_names(name: str) -> list[str]:
    """Class names without rendering anything: listing the dataset must not cost its generation."""
    return [f"glyph{i // 2:02d}{'-dot' if c.dot is not None else ''}" for i, c in enumerate(glyph_classes(GLYPH_SETS[name].pairs))]
