"""Thresholds: each check owns a frozen dataclass of its limits, the way a kernel owns its Config.

A field is declared with :func:`limit`: its default, its unit and the source of the number
(a public document or tool, or the reasoning where none exists), plus its valid range for the
config loader. The run's ``[thresholds]`` table is flat (``thresholds.peer_z = 3``): a name
shared by several checks (the peer comparison's, for one) is one knob for all of them, declared
once (a base class, or :func:`same_as`) so its default is written in one place.
:func:`read_limits` is the one way a check reads a threshold (through ``ctx.limits(cls)``): the
run's value where it has one, else the dataclass default. :func:`fields_of` is the union of
every check's fields, which the config loader validates ``[thresholds]`` against.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Limits = TypeVar("Limits", bound="DataclassInstance")  # a check's thresholds dataclass


def limit(
    default: float, *, unit: str, source: str, lo: float | None = 0, hi: float | None = None
) -> Any:
    """A threshold field: ``default`` in ``unit``, where the number comes from, its range."""
    return dataclasses.field(
        default=default, metadata={"unit": unit, "source": source, "min": lo, "max": hi}
    )


def same_as(cls: type, name: str) -> Any:
    """Another check's threshold ``name``, default and source included (one knob for both)."""
    found = {f.name: f for f in dataclasses.fields(cls)}[name]
    return dataclasses.field(default=found.default, metadata=found.metadata)


def read_limits(cls: type[Limits], overrides: Mapping[str, Any]) -> Limits:
    """``cls`` with the run's values where it has numbers for its fields, else the defaults.

    An old store may lack a threshold (it takes today's default), and a manifest from
    elsewhere may hold anything: a value that is not a number is ignored, never a crash.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = overrides.get(f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        kwargs[f.name] = int(value) if hints[f.name] is int else float(value)
    return cls(**kwargs)


def fields_of(classes: typing.Iterable[type]) -> dict[str, dataclasses.Field[Any]]:
    """Every threshold field of ``classes`` by name; a name declared twice must agree."""
    out: dict[str, dataclasses.Field[Any]] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            seen = out.setdefault(f.name, f)
            if seen.default != f.default or seen.metadata != f.metadata:
                raise ValueError(
                    f"threshold {f.name!r} is declared twice with different defaults or "
                    f"sources ({cls.__name__}); declare it once and share it (limits.same_as)"
                )
    return out
