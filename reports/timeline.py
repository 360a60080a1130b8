"""Pure: one device's telemetry as a timeline for the HTML report, aligned with its workload.

Each panel (temperature, power, SM clock, and the kernels' own throughput from their
``progress`` records) shares one time axis with the workload phases (kernel start to end, from
the results records), with the card's own limits (its NVML slowdown temperature, its enforced
power limit) and the clock-event ("throttle") reasons as spans where they were active, so a
reader sees at a glance that the clocks fell when the card hit its thermal limit during matmul.
This module gives the data in seconds and units; reports/plots.py draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from burnin.verdicts import GpuData

MAX_POINTS = 400
P = TypeVar("P", bound=Sequence[float])
_SAMPLE_PLOTS = (
    ("temp_c", "temperature", "°C"),
    ("power_w", "power", "W"),
    ("sm_clock_mhz", "SM clock", "MHz"),
)
# progress-record field -> (label, unit): what each kernel reports about its own speed.
_THROUGHPUT = {
    "tflops": ("matmul throughput", "TFLOP/s"),
    "copy_gbps": ("memory copy bandwidth", "GB/s"),
    "busbw_gbps": ("all-reduce bus bandwidth", "GB/s"),
}
_CLOSERS = ("result", "error", "done")
_IGNORED_REASONS = {"gpu_idle"}  # idle between phases is not throttling


def timeline(gpu: GpuData) -> dict[str, Any] | None:
    """The device's timeline (plots, phases, limits, throttle spans), or None with nothing to
    draw. Times are seconds since the run's start; each plot has at most MAX_POINTS points."""
    samples = sorted(
        (s for s in gpu.samples if isinstance(s.get("elapsed_s"), int | float)),
        key=lambda s: s["elapsed_s"],
    )
    records = sorted(
        (r for r in gpu.records if isinstance(r.get("elapsed_s"), int | float)),
        key=lambda r: r["elapsed_s"],
    )
    phases = _phases(records, samples)
    series = [
        (key, label, unit, [(s["elapsed_s"], s[key]) for s in samples if _num(s.get(key))])
        for key, label, unit in _SAMPLE_PLOTS
    ]
    for key, (label, unit) in _THROUGHPUT.items():
        points = [
            (r["elapsed_s"], r[key])
            for r in records
            if r.get("type") == "progress" and _num(r.get(key))
        ]
        series.append((key, label, unit, points))
    series = [s for s in series if s[3]]
    spans = _throttle_spans(samples)
    times = [t for *_, pts in series for t, _ in pts] + [p["end_s"] for p in phases]
    if not series and not phases:
        return None
    return {
        "duration_s": round(max(times, default=0.0), 3),
        "phases": [
            {
                "kernel": p["kernel"],
                "start_s": round(p["start_s"], 3),
                "end_s": round(p["end_s"], 3),
            }
            for p in phases
        ],
        "plots": [_plot(key, label, unit, pts) for key, label, unit, pts in series],
        "limits": _limits(gpu.inventory, samples),
        "throttle": [
            {
                "reason": reason,
                "active_s": round(sum(b - a for a, b in ranges), 3),
                "ranges": [(round(a, 3), round(b, 3)) for a, b in ranges],
            }
            for reason, ranges in sorted(spans.items())
        ],
    }


def _limits(inventory: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, float]:
    """The lines drawn on the panels: the card's own limits, as NVML reported them."""
    out: dict[str, float] = {}
    slowdown = inventory.get("slowdown_temp_c")
    if _num(slowdown):
        out["temp_c"] = float(slowdown)
    limits = [s["power_limit_w"] for s in samples if _num(s.get("power_limit_w"))]
    enforced = inventory.get("power_limit_enforced_w")
    if limits:
        out["power_w"] = float(max(limits))
    elif _num(enforced):
        out["power_w"] = float(enforced)
    return out


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _phases(records: list[dict[str, Any]], samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kernel windows from kernel-start to the next result/error/done (or the data's end)."""
    phases: list[dict[str, Any]] = []
    open_: dict[str, Any] | None = None
    for record in records:
        kind = record.get("type")
        if kind == "kernel-start" or (kind in _CLOSERS and open_ is not None):
            if open_ is not None:
                phases.append({**open_, "end_s": record["elapsed_s"]})
                open_ = None
            if kind == "kernel-start":
                open_ = {"kernel": str(record.get("kernel", "?")), "start_s": record["elapsed_s"]}
    if open_ is not None:
        ends = [s["elapsed_s"] for s in samples] + [r["elapsed_s"] for r in records]
        phases.append({**open_, "end_s": max([open_["start_s"], *ends])})
    return phases


def _plot(key: str, label: str, unit: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    ys = [v for _, v in points]
    return {
        "key": key,
        "label": label,
        "unit": unit,
        "min": round(min(ys), 3),
        "max": round(max(ys), 3),
        "points": decimate(points, MAX_POINTS),
    }


def decimate(points: Sequence[P], most: int) -> list[P]:
    """At most ``most`` (4 at the least) of ``points``, (time, value) pairs in time order, for a
    plot: the first, the last, and the lowest and highest of each run of points in between.

    Min/max decimation: every peak and trough stays on the plot (the peak temperature, the
    peak power a reader looks for), where taking every n-th point would skip them.
    """
    if len(points) <= max(most, 2):
        return list(points)
    inner, runs = len(points) - 2, max(1, (most - 2) // 2)
    shown = [points[0]]
    for r in range(runs):
        run = range(1 + r * inner // runs, 1 + (r + 1) * inner // runs)
        low = min(run, key=lambda i: points[i][1])
        high = max(run, key=lambda i: points[i][1])
        shown += [points[i] for i in sorted({low, high})]
    shown.append(points[-1])
    return shown


def _throttle_spans(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """reason -> [(from_s, to_s)]: a reason seen in a sample lasts until the next sample."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for i, sample in enumerate(samples):
        t0 = sample["elapsed_s"]
        t1 = samples[i + 1]["elapsed_s"] if i + 1 < len(samples) else t0
        for reason in sample.get("throttle_reasons") or ():
            if reason in _IGNORED_REASONS:
                continue
            ranges = spans.setdefault(str(reason), [])
            if ranges and abs(ranges[-1][1] - t0) < 1e-9:
                ranges[-1] = (ranges[-1][0], t1)
            else:
                ranges.append((t0, t1))
    return spans
