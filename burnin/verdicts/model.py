"""What checks read and write: :class:`GpuData` in, :class:`Verdict` out, and how statuses add up.

A check is a small pure function over one device's records (:class:`GpuData`) and the run
around it (:class:`CheckContext`: the fleet, the manifest, the thresholds) that returns zero or
more :class:`Verdict` records with the observed value, the limit, the unit, a sentence a
technician understands and the action to take. Status order is ``SKIP < PASS < WARN < FAIL <
ERROR``; SKIP marks a check that could not run (no sensor, no data) and never counts as a pass.
A device's status is the worst of its verdicts, the run's the worst of its devices'.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from burnin.errors import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_PASS
from burnin.verdicts.limits import Limits, read_limits

T = TypeVar("T")


class Status(enum.IntEnum):
    SKIP = 0
    PASS = 1
    WARN = 2
    FAIL = 3
    ERROR = 4


@dataclass(frozen=True, kw_only=True)
class Verdict:
    check: str
    status: Status
    message: str
    observed: Any = None
    limit: Any = None
    unit: str = ""
    action: str = "none"  # rma, reseat, retest, inspect-cooling, return-to-seller, none

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain data, keys in a fixed order (verdicts.jsonl, report.json)."""
        if isinstance(self.observed, _SCALARS) and isinstance(self.limit, _SCALARS):
            # Nothing to copy deeply: asdict's copies cost seconds over a fleet's verdicts.
            out = {k: getattr(self, k) for k in _FIELDS}
        else:
            out = asdict(self)
        out["status"] = self.status.name
        return {k: out[k] for k in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """The inverse of :meth:`to_dict`; KeyError on a missing status or check."""
        kwargs = {k: data[k] for k in _FIELDS if k in data}
        kwargs["status"] = Status[data["status"]]
        return cls(**kwargs)


_FIELDS = ("check", "status", "observed", "limit", "unit", "message", "action")
_SCALARS = (str, int, float, type(None))  # immutable: asdict would return them as they are


@dataclass
class GpuData:
    """Everything recorded about one device, as plain records."""

    node: str
    index: int
    inventory: dict[str, Any]
    samples: list[dict[str, Any]]
    records: list[dict[str, Any]]  # results.jsonl lines of this device
    events: list[dict[str, Any]]
    planned_kernels: list[str]
    # The result records by kernel (None: all), built on first use: checks ask for a device's
    # results once per peer they compare it with. Rebuilt when ``records`` is another list or
    # holds other records.
    _by_kernel: tuple[Any, list[dict[str, Any]], dict[Any, list[dict[str, Any]]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def results(self, kernel: str | None = None) -> list[dict[str, Any]]:
        stamp = (id(self.records), tuple(map(id, self.records)))
        if self._by_kernel is None or self._by_kernel[0] != stamp:
            every: list[dict[str, Any]] = []
            index: dict[Any, list[dict[str, Any]]] = {}
            for r in self.records:
                if r.get("type") == "result":
                    every.append(r)
                    if _hashable(name := r.get("kernel")):  # another shape matches no name
                        index.setdefault(name, []).append(r)
            self._by_kernel = (stamp, every, index)
        if kernel is None:
            return list(self._by_kernel[1])
        return list(self._by_kernel[2].get(kernel, [])) if _hashable(kernel) else []

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == kind]

    def sample_values(self, key: str) -> list[float]:
        return [v for s in self.samples if isinstance(v := s.get(key), (int, float))]

    def metric(self, name: str) -> float | None:
        """The latest result's figure ``name``; None when absent or not a number (a NaN is
        stored as null), so a check never judges a figure that was not measured."""
        values = [
            v
            for r in self.results()
            if isinstance(v := r.get("metrics", {}).get(name), int | float)
            and not isinstance(v, bool)
        ]
        return values[-1] if values else None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@dataclass
class CheckContext:
    thresholds: dict[str, Any]
    fleet: list[GpuData]
    manifest: dict[str, Any] = field(default_factory=dict)
    # rack.jsonl of a multi-node run (burnin/verdicts/rack.py reads it); empty otherwise.
    rack: list[dict[str, Any]] = field(default_factory=list)
    # Figures a check derives once per device and reads again for every peer.
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def limits(self, cls: type[Limits]) -> Limits:
        """A check's thresholds: dataclass ``cls`` with the run's ``[thresholds]`` values."""
        return self.memo(("limits", cls), lambda: read_limits(cls, self.thresholds))

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()`` once per ``key`` for this run's checks (a device's figure read again
        for each of its peers would otherwise cost the fleet's size squared)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


def is_cpu(gpu: GpuData) -> bool:
    """The CPU fallback: no card to screen or reference (a simulated card, kind ``simulated``,
    computes on the CPU but stands for a GPU, so it is judged like one)."""
    return gpu.inventory.get("kind") == "cpu"


def ran(gpu: GpuData) -> bool:
    """Whether a run produced (or planned) anything; False for an ``inspect`` snapshot."""
    return bool(gpu.samples or gpu.records or gpu.planned_kernels or gpu.events)


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, default=Status.PASS)


def device_status(verdicts: Iterable[Verdict]) -> Status:
    found = [v.status for v in verdicts]
    return worst(found) if found else Status.ERROR


def nothing_judged(verdicts: list[Verdict]) -> Verdict | None:
    """An ERROR for a device none of whose checks could run: it was not certified at all."""
    if any(v.status != Status.SKIP for v in verdicts):
        return None
    return Verdict(
        check="incomplete",
        status=Status.ERROR,
        action="retest",
        message="no check could judge this card (every check was skipped; see their reasons): "
        "it is not certified",
    )


def exit_code(statuses: Iterable[Status], strict: bool = False) -> int:
    """The process exit code from every device's status (docs/contracts.md).

    A FAIL anywhere is 3 even beside an ERROR elsewhere: a card that computes wrong answers
    goes back to the vendor, whatever happened to its neighbours. Then ERROR is 4 (incomplete),
    WARN is 3 under ``--strict``, and anything else 0. No device at all is incomplete.
    """
    found = set(statuses)
    if Status.FAIL in found:
        return EXIT_FAIL
    if Status.ERROR in found or not found:
        return EXIT_INCOMPLETE
    if strict and Status.WARN in found:
        return EXIT_FAIL
    return EXIT_PASS
