"""Distillation methods, one file each, found and registered by importing every module here."""

import importlib
import pkgutil

from kdcore.methods.base import Distiller, Hyperparams, MethodContext, StepInfo, with_total
from kdcore.methods.registry import get_method, list_methods, register_method

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "registry") and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Distiller", "Hyperparams", "MethodContext", "StepInfo", "get_method", "list_methods", "register_method", "with_total"]
