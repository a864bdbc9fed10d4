"""One factory for every architecture: kdcore's own, then timm's, then torchvision's.

Like timm: ``@register_model`` puts a builder under a name and ``create_model(name, ...)`` is the
only entry point. Weights are never downloaded: everything is built with random initialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

ModelBuilder = Callable[..., nn.Module]
_OWN_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _OWN_MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _OWN_MODELS[name] = builder
        return builder

    return decorate


def _torchvision_names() -> set[str]:
    import torchvision.models as tvm

    return set(tvm.list_models(module=tvm))


def model_source(name: str) -> str | None:
    """'kdcore', 'timm', 'torchvision', or None when no registry knows the name."""
    import timm

    if name in _OWN_MODELS:
        return "kdcore"
    if timm.is_model(name):
        return "timm"
    if name.startswith("torchvision.") or name in _torchvision_names():
        return "torchvision"
    return None


def is_model(name: str) -> bool:
    return model_source(name) is not None


def list_models(source: str | None = None) -> list[str]:
    import timm

    names: list[str] = []
    if source in (None, "kdcore"):
        names += sorted(_OWN_MODELS)
    if source in (None, "timm"):
        names += timm.list_models()
    if source in (None, "torchvision"):
        names += sorted(_torchvision_names())
    return names


def create_model(name: str, num_classes: int, in_chans: int = 3, arch_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build ``name`` with ``num_classes`` outputs and ``in_chans`` input channels, randomly initialised.

    ``arch_kwargs`` go to the builder as they are (``kdcore.spec.ARCH_KWARGS`` says which a job may
    give); one the builder does not take is a ``ValueError`` naming the architecture.
    """
    import timm

    kwargs = dict(arch_kwargs or {})
    source = model_source(name)
    if source is None:
        raise ValueError(f"unknown architecture {name!r}: use a timm or torchvision model name or one of {sorted(_OWN_MODELS)}")
    if source == "kdcore" and kwargs:
        raise ValueError(f"kdcore architecture {name!r} takes no arch_kwargs (given {sorted(kwargs)})")
    if source == "torchvision" and in_chans != 3:
        raise ValueError(f"torchvision model {name!r} takes 3 input channels; use a timm or kdcore architecture for {in_chans}")
    try:
        if source == "kdcore":
            return _OWN_MODELS[name](num_classes=num_classes, in_chans=in_chans)
        if source == "timm":
            return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
        import torchvision.models as tvm

        return tvm.get_model(name.removeprefix("torchvision."), weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        if not kwargs:
            raise
        raise ValueError(f"architecture {name!r} does not take arch_kwargs {sorted(kwargs)}: {exc}") from exc
