"""Architectures (``create_model``), safe teacher loading, preprocessing and feature access."""

from kdcore.models import cifar_resnet, cifar_wrn  # noqa: F401  (registers kdcore's own architectures)
from kdcore.models.registry import create_model, is_model, list_models, model_source, register_model

__all__ = ["create_model", "is_model", "list_models", "model_source", "register_model"]
