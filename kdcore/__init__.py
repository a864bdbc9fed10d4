"""kdcore: the distillation library behind Distillery. Pure torch/timm; usable with no server.

from kdcore import JobSpec, train
result = train(JobSpec.model_validate_json(open("spec.json").read()))

Names are loaded on first use (PEP 562), so ``import kdcore.spec`` stays torch-free: the service
core validates job specs with it without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "KdError": "kdcore.errors",
    "MetricPoint": "kdcore.events",
    "Progress": "kdcore.events",
    "TrainCallbacks": "kdcore.events",
    "TrainResult": "kdcore.events",
    "get_method": "kdcore.methods",
    "list_methods": "kdcore.methods",
    "create_model": "kdcore.models",
    "list_models": "kdcore.models",
    "JobSpec": "kdcore.spec",
    "train": "kdcore.training",
}

if TYPE_CHECKING:
    from kdcore.errors import KdError
    from kdcore.events import MetricPoint, Progress, TrainCallbacks, TrainResult
    from kdcore.methods import get_method, list_methods
    from kdcore.models import create_model, list_models
    from kdcore.spec import JobSpec
    from kdcore.training import train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdcore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "JobSpec",
    "KdError",
    "MetricPoint",
    "Progress",
    "TrainCallbacks",
    "TrainResult",
    "create_model",
    "get_method",
    "list_methods",
    "list_models",
    "train",
]
