"""Shared plumbing of the screening and health checks: one verdict per check from many findings.

A screening check looks at several facts (PCI id vs name, memory size, SM count, duplicates...).
Each fact gives a finding; :class:`Findings` folds them into the single verdict the report shows:
the worst problem (all problems named in the message), else PASS naming what was verified, else
SKIP naming what could not be read, because a check that verified nothing must never read as a
pass. The helpers here also answer the questions every check asks: the effective threshold,
the card's SKU, the claimed SKU, whether a run happened at all (``burnin inspect`` builds data
with no samples and no records: checks that need a run then emit nothing), and which samples were
taken while a kernel ran ("under load").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from burnin.config import ThresholdsSection
from burnin.inventory import card_sku
from burnin.skus import Sku, load_skus
from burnin.verdicts import CheckContext, GpuData, Status, Verdict

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ThresholdsSection)}
# A sample counts as "under load" without kernel records when the GPU is this busy (%).
_BUSY_UTIL_PCT = 50.0
_CLOSERS = ("result", "error", "done")


@dataclass
class _Finding:
    status: Status
    message: str
    observed: Any = None
    limit: Any = None
    unit: str = ""
    action: str = "none"


@dataclass
class Findings:
    """Collects a check's findings and folds them into one :class:`Verdict`."""

    check: str
    items: list[_Finding] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    def problem(
        self,
        status: Status,
        message: str,
        *,
        observed: Any = None,
        limit: Any = None,
        unit: str = "",
        action: str = "none",
    ) -> None:
        self.items.append(_Finding(status, message, observed, limit, unit, action))

    def ok(self, message: str, *, observed: Any = None, limit: Any = None, unit: str = "") -> None:
        self.items.append(_Finding(Status.PASS, message, observed, limit, unit))

    def gap(self, what: str) -> None:
        """Something this check could not read (named in a PASS or SKIP message)."""
        self.gaps.append(what)

    def verdict(self) -> Verdict:
        if not self.items:
            reason = "; ".join(self.gaps) or "nothing to judge"
            return Verdict(check=self.check, status=Status.SKIP, message=f"not judged: {reason}")
        ranked = sorted(self.items, key=lambda f: -f.status)
        top = ranked[0]
        shown = (
            [f for f in ranked if f.status == Status.PASS]
            if top.status == Status.PASS
            else [f for f in ranked if f.status > Status.PASS]
        )
        message = "; ".join(f.message for f in shown)
        if top.status == Status.PASS and self.gaps:
            message += f" (not checked: {'; '.join(self.gaps)})"
        return Verdict(
            check=self.check,
            status=top.status,
            message=message,
            observed=top.observed,
            limit=top.limit,
            unit=top.unit,
            action=top.action,
        )


def limit(ctx: CheckContext, name: str) -> Any:
    """The run's threshold ``name``, or ThresholdsSection's default (old stores, inspect)."""
    value = ctx.thresholds.get(name)
    return _DEFAULTS[name] if value is None else value


def is_cpu(gpu: GpuData) -> bool:
    """The CPU fallback: no card to screen or reference (a simulated card, kind ``simulated``,
    computes on the CPU but stands for a GPU, so it is judged like one)."""
    return gpu.inventory.get("kind") == "cpu"


def ran(gpu: GpuData) -> bool:
    """Whether a run produced (or planned) anything; False for an ``inspect`` snapshot."""
    return bool(gpu.samples or gpu.records or gpu.planned_kernels or gpu.events)


def sku_of(gpu: GpuData) -> Sku | None:
    return card_sku(gpu.inventory)


def claimed_sku(gpu: GpuData, ctx: CheckContext) -> tuple[str | None, Sku | None]:
    """The SKU the card is claimed to be: (key, Sku or None if the key is unknown).

    Looked up in order: the inventory record's ``claimed_sku`` (a simulated fleet's scenario
    SKU), the manifest's ``claimed_sku`` (a string, or a dict by node), then the run config's
    ``[inspect] claimed_sku``.
    """
    key = gpu.inventory.get("claimed_sku")
    manifest_claim = ctx.manifest.get("claimed_sku")
    if not key and isinstance(manifest_claim, dict):
        key = manifest_claim.get(gpu.node)
    elif not key and isinstance(manifest_claim, str):
        key = manifest_claim
    if not key:
        key = ctx.manifest.get("config", {}).get("inspect", {}).get("claimed_sku")
    if not key:
        return None, None
    return str(key), load_skus().get(str(key))


# A device with one of these events did not run its planned load to the end (its last kernel
# may stay "open" until the data ends, idle samples included): its load is nobody's measure.
_CUT_SHORT = {"crash", "hang", "lost", "killed", "interrupted", "thermal-guard", "not-started"}


def full_load(gpu: GpuData) -> bool:
    """Whether a (non-CPU) device ran its planned load to the end, fit to compare with peers."""
    return not is_cpu(gpu) and not any(e.get("kind") in _CUT_SHORT for e in gpu.events)


def guard_stop_s(gpu: GpuData) -> float | None:
    """When the thermal guard stopped this device's stress (elapsed_s), or None if it did not."""
    times = [
        float(e["elapsed_s"])
        for e in gpu.events
        if e.get("kind") == "thermal-guard" and isinstance(e.get("elapsed_s"), int | float)
    ]
    return min(times, default=None)


def load_windows(gpu: GpuData, kernel: str | None = None) -> list[tuple[float, float]]:
    """(start, end) elapsed_s of each kernel run (of ``kernel`` only, if given), from
    kernel-start to its result/error/done.

    Load ends where the thermal guard stopped the stress: the samples after it show a card
    winding down at burnin's request, and how many of them the sampler caught before the worker
    finished its step depends on the host's scheduling, not on the card.
    """
    windows = [(lo, hi) for name, lo, hi in _kernel_windows(gpu) if kernel in (None, name)]
    stop_s = guard_stop_s(gpu)
    if stop_s is None:
        return windows
    return [(lo, min(hi, stop_s)) for lo, hi in windows if lo <= stop_s]


def _kernel_windows(gpu: GpuData) -> list[tuple[str | None, float, float]]:
    windows: list[tuple[str | None, float, float]] = []
    start, name = None, None
    end_of_data = max((s.get("elapsed_s", 0.0) for s in gpu.samples), default=0.0)
    records = sorted(
        (r for r in gpu.records if isinstance(r.get("elapsed_s"), int | float)),
        key=lambda r: r["elapsed_s"],
    )
    for record in records:
        kind = record.get("type")
        if kind == "kernel-start":
            if start is not None:
                windows.append((name, start, record["elapsed_s"]))
            start, name = record["elapsed_s"], record.get("kernel")
        elif kind in _CLOSERS and start is not None:
            windows.append((name, start, record["elapsed_s"]))
            start = None
    if start is not None:  # the worker died mid-kernel: its load lasted until the data ends
        windows.append((name, start, max(start, end_of_data)))
    return windows


def loaded_samples(gpu: GpuData, kernel: str | None = None) -> list[dict[str, Any]]:
    """Samples taken while a kernel (``kernel``, if given) ran; without kernel records, samples
    with a busy GPU (for any kernel) or none (for one kernel).

    A sample stamped the instant a kernel started shows the card before the load (a simulated
    fleet's clock stands still while a worker starts, so such ties happen there).
    """
    windows = load_windows(gpu, kernel)
    if kernel is not None and not windows:
        return []
    if windows:
        return [
            s for s in gpu.samples if any(lo < s.get("elapsed_s", -1.0) <= hi for lo, hi in windows)
        ]
    return [
        s
        for s in gpu.samples
        if isinstance(s.get("util_pct"), int | float) and s["util_pct"] >= _BUSY_UTIL_PCT
    ]


def values(samples: list[dict[str, Any]], key: str) -> list[float]:
    return [s[key] for s in samples if isinstance(s.get(key), int | float)]


def unsupported(gpu: GpuData, name: str) -> bool:
    """Whether ``name`` is listed as not supported by the card (inventory or any sample)."""
    if name in gpu.inventory.get("unsupported", ()):
        return True
    return any(name in s.get("unsupported", ()) for s in gpu.samples)


def growth_per_min(gpu: GpuData, key: str) -> float | None:
    """How fast a sampled counter grew, per minute of run (first to last sample)."""
    points = sorted(
        (s["elapsed_s"], s[key])
        for s in gpu.samples
        if isinstance(s.get(key), int | float) and isinstance(s.get("elapsed_s"), int | float)
    )
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / ((points[-1][0] - points[0][0]) / 60.0)
