"""Pure: one device's telemetry as a timeline for the HTML report, aligned with its workload.

Each plot (temperature, power, SM clock, and the kernels' own throughput from their
``progress`` records) shares one time axis with the workload phases (kernel start to end, from
the results records) drawn behind it, and the clock-event ("throttle") reasons drawn as bars
where they were active, so a reader sees at a glance that the clocks fell when the card hit its
thermal limit during matmul. Coordinates are computed here, so the template only places numbers
into inline SVG (no script, nothing to load).
"""

from __future__ import annotations

from typing import Any

from burnin.verdicts import GpuData

WIDTH, PLOT_H, LEFT, BAR_H = 640.0, 70.0, 4.0, 10.0
MAX_POINTS = 400
_SAMPLE_PLOTS = (
    ("temp_c", "temperature", "C"),
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
    """The device's timeline (plots, phases, throttle bars), or None with nothing to draw."""
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
        (label, unit, [(s["elapsed_s"], s[key]) for s in samples if _num(s.get(key))])
        for key, label, unit in _SAMPLE_PLOTS
    ]
    for key, (label, unit) in _THROUGHPUT.items():
        points = [
            (r["elapsed_s"], r[key])
            for r in records
            if r.get("type") == "progress" and _num(r.get(key))
        ]
        series.append((label, unit, points))
    series = [s for s in series if s[2]]
    spans = _throttle_spans(samples)
    times = [t for *_, pts in series for t, _ in pts] + [p["end_s"] for p in phases]
    if not series and not phases:
        return None
    t_max = max(times, default=0.0) or 1.0
    scale = (WIDTH - LEFT) / t_max
    return {
        "width": WIDTH,
        "plot_h": PLOT_H,
        "bar_h": BAR_H,
        "duration_s": round(t_max, 3),
        "phases": [
            {
                "kernel": p["kernel"],
                "start_s": round(p["start_s"], 3),
                "end_s": round(p["end_s"], 3),
                "x": round(LEFT + p["start_s"] * scale, 1),
                "w": round(max(1.0, (p["end_s"] - p["start_s"]) * scale), 1),
            }
            for p in phases
        ],
        "plots": [_plot(label, unit, pts, scale) for label, unit, pts in series],
        "throttle": [
            {
                "reason": reason,
                "y": round(i * (BAR_H + 2), 1),
                "active_s": round(sum(b - a for a, b in ranges), 3),
                "bars": [
                    {"x": round(LEFT + a * scale, 1), "w": round(max(1.5, (b - a) * scale), 1)}
                    for a, b in ranges
                ],
            }
            for i, (reason, ranges) in enumerate(sorted(spans.items()))
        ],
        "throttle_h": round(len(spans) * (BAR_H + 2), 1),
    }


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


def _plot(label: str, unit: str, points: list[tuple[float, float]], scale: float) -> dict[str, Any]:
    step = max(1, len(points) // MAX_POINTS)
    shown = points[::step]
    ys = [v for _, v in shown]
    lo, hi = min(ys), max(ys)

    def y(v: float) -> float:  # a flat series sits mid-height, not on the floor
        return PLOT_H / 2 if hi == lo else PLOT_H - 3 - (v - lo) / (hi - lo) * (PLOT_H - 6)

    coords = " ".join(f"{LEFT + t * scale:.1f},{y(v):.1f}" for t, v in shown)
    return {
        "label": label,
        "unit": unit,
        "min": round(lo, 3),
        "max": round(hi, 3),
        "points": coords,
        "single": len(shown) == 1,
    }


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
