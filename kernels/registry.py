"""Kernel registry: ``@register("matmul")`` on a class, lookup by name, resettable for tests.

A duplicate name raises at import time, so two kernels can never silently shadow each other.
Registering dry-checks the class (a ``Config`` dataclass and a ``run`` method) the way a plugin
host validates plugins before the first run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

_KERNELS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator adding a kernel under ``name``."""

    def wrap(cls: type) -> type:
        if name in _KERNELS:
            raise ValueError(f"kernel {name!r} is already registered by {_KERNELS[name].__name__}")
        config = getattr(cls, "Config", None)
        if config is None or not dataclasses.is_dataclass(config):
            raise TypeError(f"kernel {name!r} needs a nested dataclass named Config")
        if not callable(getattr(cls, "run", None)):
            raise TypeError(f"kernel {name!r} needs a run(ctx) method")
        cls.name = name
        _KERNELS[name] = cls
        return cls

    return wrap


def get(name: str) -> Any:
    try:
        return _KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown kernel {name!r} (known: {', '.join(names())})") from None


def names() -> list[str]:
    return sorted(_KERNELS)


def snapshot() -> dict[str, type]:
    return dict(_KERNELS)


def restore(saved: dict[str, type]) -> None:
    _KERNELS.clear()
    _KERNELS.update(saved)
