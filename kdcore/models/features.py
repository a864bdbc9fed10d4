"""Read intermediate stage outputs from any model without rewriting it.

timm models and kdcore's own expose ``forward_intermediates``/``feature_info``; torchvision models
go through ``torchvision.models.feature_extraction``. Both give ``(logits, [stage features])``.
"""

from __future__ import annotations

from functools import lru_cache

from torch import Tensor, nn

from kdcore.models.preprocess import PreprocessedModel


def supports_features(model: nn.Module) -> bool:
    inner = model.model if isinstance(model, PreprocessedModel) else model
    if hasattr(inner, "forward_intermediates") and hasattr(inner, "forward_head"):
        return True
    return _torchvision_stage_nodes(inner) is not None


def _torchvision_stage_nodes(model: nn.Module) -> list[str] | None:
    names = [n for n, _ in model.named_children()]
    if all(f"layer{i}" in names for i in (1, 2, 3, 4)):
        return [f"layer{i}" for i in (1, 2, 3, 4)]
    if "features" in names:
        return None
    return None


STAGE_WORDS = ("layer", "stage", "block")


def stage_indices(model: nn.Module) -> list[int] | None:
    """Indices of ``feature_info`` that are stages, leaving out a leading stem (timm lists ``act1`` first).

    The KD literature pairs stage outputs, not the stem, so timm and kdcore models line up alike.
    """
    info = getattr(model, "feature_info", None)
    if info is None:
        return None
    entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    names = [str(entry.get("module", "")) for entry in entries]
    if len(names) > 1 and not any(word in names[0] for word in STAGE_WORDS):
        return list(range(1, len(names)))
    return None


class FeatureModel(nn.Module):
    """Wraps a (preprocessed) model so ``forward`` returns ``(logits, [stage features])``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.wrapped = model
        inner = model.model if isinstance(model, PreprocessedModel) else model
        self._extractor: nn.Module | None = None
        self._indices = stage_indices(inner)
        if not (hasattr(inner, "forward_intermediates") and hasattr(inner, "forward_head")):
            nodes = _torchvision_stage_nodes(inner)
            if nodes is None:
                raise ValueError(f"{type(inner).__name__} exposes no stage features")
            from torchvision.models.feature_extraction import create_feature_extractor

            last = [n for n, _ in inner.named_children()][-1]
            self._extractor = create_feature_extractor(inner, return_nodes={**{n: n for n in nodes}, last: "logits"})

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        model = self.wrapped
        if isinstance(model, PreprocessedModel):
            x = model.preprocess(x)
            model = model.model
        if self._extractor is not None:
            out = self._extractor(x)
            logits = out.pop("logits")
            return logits, list(out.values())
        if self._indices is not None:
            final, features = model.forward_intermediates(x, indices=self._indices)
        else:
            final, features = model.forward_intermediates(x)
        return model.forward_head(final), list(features)


def feature_channels(model: nn.Module, input_size: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Shapes (C,H,W) of each stage output for one input of ``input_size`` (one dry run)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        _, features = FeatureModel(model)(torch.zeros(1, *input_size))
    model.train(was_training)
    return [tuple(f.shape[1:]) for f in features]


@lru_cache(maxsize=256)
def arch_supports_features(arch: str) -> bool:
    """Whether architecture ``arch`` exposes stage features (built once, cached per name)."""
    from kdcore.models.registry import create_model

    return supports_features(create_model(arch, num_classes=10))
