"""Check registry: ``@check("thermal", ...)`` on a function, lookup by check id.

A check is registered under the id its verdicts carry, with what it needs to judge (a
``run``'s records, its ``telemetry`` samples, the card's ``inventory``), whether it judges the
CPU fallback, and the dataclass of its thresholds, so :func:`burnin.verdicts.stage.evaluate`
knows where to call it and ``burnin checks`` can list it the way ``burnin kernels`` lists
kernels. A duplicate id raises at import time. Built-in checks are imported explicitly by
``burnin/verdicts/__init__.py``; a check module imports this module and
:mod:`burnin.verdicts.model`, never the package, so the package can import every check.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from burnin.verdicts.limits import fields_of
from burnin.verdicts.model import CheckContext, GpuData, Verdict, is_cpu, ran

CheckFn = Callable[[GpuData, CheckContext], Iterable[Verdict]]
Need = Literal["run", "telemetry", "inventory"]
NEEDS: tuple[Need, ...] = ("run", "telemetry", "inventory")


@dataclass(frozen=True, kw_only=True)
class NoThresholds:
    """A check judged by facts alone (a wrong bit, an XID, a crash) has no thresholds."""


@dataclass(frozen=True)
class Check:
    """One registered check: its id, function and what it needs."""

    id: str
    fn: CheckFn
    needs: tuple[Need, ...] = ("run",)
    cpu: bool = True  # judges the CPU fallback (else only cards, real or simulated)
    thresholds: type = NoThresholds

    @property
    def judges(self) -> str:
        """What it judges: the first line of the function's docstring."""
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else ""

    def judge(self, gpu: GpuData, ctx: CheckContext) -> list[Verdict]:
        """This check's verdicts on ``gpu``; none where it does not apply."""
        return list(self.fn(gpu, ctx)) if self.applies(gpu) else []

    def applies(self, gpu: GpuData) -> bool:
        """Whether ``gpu`` has what this check needs: an inspect snapshot has no run or
        telemetry, and a check of cards only does not judge the CPU fallback."""
        if not self.cpu and is_cpu(gpu):
            return False
        return set(self.needs) <= {"inventory"} or ran(gpu)


_CHECKS: dict[str, Check] = {}


def check(
    name: str,
    *,
    needs: Iterable[Need] = ("run",),
    cpu: bool = True,
    thresholds: type = NoThresholds,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check function under its check id; duplicates raise.

    Args:
        name: the check id its verdicts carry (README's table of checks).
        needs: the data it reads: ``run`` (result and event records), ``telemetry``
            (samples), ``inventory`` (the card's identity and counters). A check that needs
            only the inventory also judges ``burnin inspect`` snapshots.
        cpu: whether it judges the CPU fallback.
        thresholds: the frozen dataclass of its thresholds (defaults with units and
            sources); the run's ``[thresholds]`` override them by field name.
    """
    wanted = tuple(needs)
    if not wanted or set(wanted) - set(NEEDS):
        raise ValueError(f"check {name!r}: needs must be among {NEEDS}, got {wanted}")
    if not dataclasses.is_dataclass(thresholds):
        raise TypeError(f"check {name!r}: thresholds must be a dataclass")

    def wrap(fn: CheckFn) -> CheckFn:
        if name in _CHECKS:
            raise ValueError(f"check {name!r} is already registered")
        _CHECKS[name] = Check(name, fn, wanted, cpu, thresholds)
        return fn

    return wrap


def checks() -> dict[str, Check]:
    """Every registered check by id, in registration order (importing any module of this
    package first runs its ``__init__``, which registers the built-in checks)."""
    return dict(_CHECKS)


def snapshot() -> dict[str, Check]:
    """The registry as it is, for :func:`restore` (a test that registers a check of its own)."""
    return dict(_CHECKS)


def restore(saved: dict[str, Check]) -> None:
    """Put back a :func:`snapshot`; the ``[thresholds]`` table is rebuilt on its next use."""
    _CHECKS.clear()
    _CHECKS.update(saved)
    threshold_section.cache_clear()


def registered() -> dict[str, CheckFn]:
    """Every registered check by id, as a function that judges a device where it applies."""
    return {name: c.judge for name, c in checks().items()}


@functools.cache
def threshold_section() -> type:
    """The ``[thresholds]`` table as one frozen dataclass: every registered check's fields,
    which the config loader validates a profile against (unknown key, type, range)."""
    classes = [c.thresholds for c in checks().values()]
    specs = []
    for name, f in fields_of(classes).items():
        owner = next(c for c in classes if name in {g.name for g in dataclasses.fields(c)})
        hint = typing.get_type_hints(owner)[name]
        specs.append((name, hint, dataclasses.field(default=f.default, metadata=f.metadata)))
    return dataclasses.make_dataclass("Thresholds", specs, frozen=True, kw_only=True)


def describe(c: Check) -> dict[str, Any]:
    """A check as plain data for ``burnin checks``: id, what it judges, needs, thresholds."""
    hints = typing.get_type_hints(c.thresholds)
    return {
        "id": c.id,
        "judges": c.judges,
        "needs": list(c.needs),
        "cpu": c.cpu,
        "thresholds": [
            {
                "name": f.name,
                "default": f.default,
                "type": getattr(hints[f.name], "__name__", str(hints[f.name])),
                "unit": f.metadata.get("unit", ""),
                "source": f.metadata.get("source", ""),
            }
            for f in dataclasses.fields(c.thresholds)
        ],
    }
