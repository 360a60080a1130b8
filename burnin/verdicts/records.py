"""Questions every check asks of a device's records.

The claimed SKU, whether the device ran its planned load to the end, when the thermal guard
stopped it, which samples were taken while a kernel ran ("under load"), how fast a counter grew,
the last result of a kernel and its cross-device digests, and whether heat throttling was seen.
Pure functions over :class:`~burnin.verdicts.model.GpuData`.
"""

from __future__ import annotations

import bisect
from typing import Any

from burnin.skus import Sku, load_skus
from burnin.verdicts.model import CheckContext, GpuData, is_cpu

# A sample counts as "under load" without kernel records when the GPU is this busy (%).
_BUSY_UTIL_PCT = 50.0
_CLOSERS = ("result", "error", "done")


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
        los, his = _union(windows)
        return [s for s in gpu.samples if _inside(s.get("elapsed_s", -1.0), los, his)]
    return [
        s
        for s in gpu.samples
        if isinstance(s.get("util_pct"), int | float) and s["util_pct"] >= _BUSY_UTIL_PCT
    ]


def loaded_in_run(
    gpu: GpuData, ctx: CheckContext, kernel: str | None = None
) -> list[dict[str, Any]]:
    """:func:`loaded_samples`, found once per device and kernel for all of the run's checks
    (five ask for a card's samples under load; a fleet's scans of them cost seconds)."""
    key = ("loaded_samples", gpu.node, gpu.index, kernel)
    return ctx.memo(key, lambda: loaded_samples(gpu, kernel))


def _union(windows: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The (lo, hi] windows as disjoint ones in time order: the starts and the ends."""
    los: list[float] = []
    his: list[float] = []
    for lo, hi in sorted(w for w in windows if w[0] < w[1]):
        if his and lo <= his[-1]:  # (a, b] and (c, d] with c <= b make (a, max(b, d)]
            his[-1] = max(his[-1], hi)
        else:
            los.append(lo)
            his.append(hi)
    return los, his


def _inside(t: float, los: list[float], his: list[float]) -> bool:
    """Whether ``lo < t <= hi`` for one of the windows :func:`_union` made."""
    at = bisect.bisect_left(his, t)  # the first window ending at or after t
    return at < len(his) and los[at] < t <= his[at]


# isinstance with a tuple of types: the same test as with ``int | float``, a third faster,
# which over a fleet's samples read by a dozen checks is seconds.
NUMBER = (int, float)


def values(samples: list[dict[str, Any]], key: str) -> list[float]:
    return [v for s in samples if isinstance(v := s.get(key), NUMBER)]


def growth_per_min(gpu: GpuData, key: str) -> float | None:
    """How fast a sampled counter grew, per minute of run (first to last sample)."""
    points = sorted(
        (t, v)
        for s in gpu.samples
        if isinstance(v := s.get(key), NUMBER) and isinstance(t := s.get("elapsed_s"), NUMBER)
    )
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / ((points[-1][0] - points[0][0]) / 60.0)


_THROTTLE_HEAT = {"hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown", "sw_power_cap"}


_THROTTLE_HEAT |= {"hw_power_brake_slowdown"}


def no_sku_reason(gpu: GpuData) -> str:
    if is_cpu(gpu):
        return "no datasheet reference on the CPU fallback"
    return f"no SKU known for {gpu.inventory.get('name') or 'this card'!r}"


def heat_action(gpu: GpuData) -> str:
    """``inspect-cooling`` when power or thermal throttling was seen during the run."""
    seen = {r for s in gpu.samples for r in s.get("throttle_reasons") or ()}
    return "inspect-cooling" if seen & _THROTTLE_HEAT else "retest"


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else {}: a store from elsewhere may hold any shape."""
    return value if isinstance(value, dict) else {}


def digests(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A matmul result's cross-device digests by dtype, well-formed ones only."""
    out = {}
    for dtype, digest in as_dict((result or {}).get("cross")).items():
        probe = digest.get("probe") if isinstance(digest, dict) else None
        if isinstance(digest, dict) and isinstance(digest.get("sha256"), str):
            numeric = isinstance(probe, list) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in probe
            )
            scale = digest.get("scale")
            out[str(dtype)] = digest | {
                "probe": probe if numeric else None,
                "scale": float(scale) if isinstance(scale, int | float) else 0.0,
            }
    return out


def last_result(gpu: GpuData, kernel: str) -> dict[str, Any] | None:
    found = gpu.results(kernel)
    return found[-1] if found else None


def guarded(gpu: GpuData) -> str | None:
    """Why speed is not judged on a card the thermal guard stopped, or None if it was not.

    Cut short while it throttled, its figures mix full-speed and throttled batches in a share
    set by when the guard tripped, and how many batches it got in depends on the host's
    scheduling; the thermal FAIL is the finding.
    """
    stop_s = guard_stop_s(gpu)
    if stop_s is None:
        return None
    return f"the thermal guard stopped the stress at {stop_s:g} s: see the thermal verdict"


_NOT_SET = ("", "n/a", "none", "unknown")


def present(value: Any) -> bool:
    return value is not None and str(value).strip().lower() not in _NOT_SET
