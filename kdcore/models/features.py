"""Read intermediate stage outputs from any model without rewriting it.

timm models and kdcore's own expose ``forward_intermediates``/``feature_info``; torchvision models
go through ``torchvision.models.feature_extraction`` (:mod:`kdcore.models.torchvision_stages`).
Both give ``(logits, [stage features])``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol, cast

from torch import Tensor, nn

from kdcore.models.preprocess import PreprocessedModel
from kdcore.models.torchvision_stages import TorchvisionFeatures, torchvision_stage_nodes


class StagedModel(Protocol):
    """What timm's and kdcore's models expose for reading stage outputs (``_has_intermediates`` checks for it)."""

    def forward_intermediates(self, x: Tensor, **kwargs: Any) -> tuple[Tensor, list[Tensor]]: ...

    def forward_head(self, x: Tensor) -> Tensor: ...


def _has_intermediates(model: nn.Module) -> bool:
    return hasattr(model, "forward_intermediates") and hasattr(model, "forward_head")


def _stage_nodes(model: nn.Module) -> list[str] | None:
    inner = model.model if isinstance(model, PreprocessedModel) else model
    channels = model.preprocess.channels if isinstance(model, PreprocessedModel) else 3
    return torchvision_stage_nodes(inner, channels)


def supports_features(model: nn.Module) -> bool:
    inner = model.model if isinstance(model, PreprocessedModel) else model
    return _has_intermediates(inner) or _stage_nodes(model) is not None


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
        self._extractor: TorchvisionFeatures | None = None
        self._indices = stage_indices(inner)
        if not _has_intermediates(inner):
            nodes = _stage_nodes(model)
            if nodes is None:
                raise ValueError(f"{type(inner).__name__} exposes no stage features")
            self._extractor = TorchvisionFeatures(inner, nodes)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        model = self.wrapped
        if isinstance(model, PreprocessedModel):
            x = model.preprocess(x)
            model = model.model
        if self._extractor is not None:
            if self._extractor.training != model.training:
                self._extractor.train(model.training)
            return self._extractor(x)
        staged = cast(StagedModel, model)
        if self._indices is not None:
            final, features = staged.forward_intermediates(x, indices=self._indices)
        else:
            final, features = staged.forward_intermediates(x)
        return staged.forward_head(final), list(features)


def feature_channels(model: nn.Module, input_size: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Shapes (C,H,W) of each stage output for one input of ``input_size`` (one dry run)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        _, features = FeatureModel(model)(torch.zeros(1, *input_size))
    model.train(was_training)
    return [tuple(f.shape[1:]) for f in features]


def arch_supports_features(arch: str, arch_kwargs: Mapping[str, Any] | None = None) -> bool:
    """Whether architecture ``arch`` built with ``arch_kwargs`` exposes stage features (built once, cached)."""
    return _arch_supports_features(arch, json.dumps(dict(arch_kwargs or {}), sort_keys=True))


@lru_cache(maxsize=256)
def _arch_supports_features(arch: str, arch_kwargs_json: str) -> bool:
    from kdcore.models.registry import create_model

    return supports_features(create_model(arch, num_classes=10, arch_kwargs=json.loads(arch_kwargs_json)))
