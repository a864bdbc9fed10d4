"""Method registry: ``register_method`` on a Distiller class, ``get_method(name)``, ``list_methods()``."""

from __future__ import annotations

from kdcore.methods.base import Distiller

_METHODS: dict[str, type[Distiller]] = {}


def register_method(cls: type[Distiller]) -> type[Distiller]:
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Distiller]:
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS))}") from None


def list_methods() -> list[type[Distiller]]:
    return [_METHODS[name] for name in sorted(_METHODS)]
