"""kdcore: the distillation library behind Distillery. Pure torch/timm; usable with no server.

from kdcore import JobSpec, train
result = train(JobSpec.model_validate_json(open("spec.json").read()))
"""

from kdcore.errors import KdError
from kdcore.events import MetricPoint, Progress, TrainCallbacks, TrainResult
from kdcore.methods import get_method, list_methods
from kdcore.models import create_model, list_models
from kdcore.spec import JobSpec
from kdcore.train import train

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
