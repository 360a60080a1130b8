"""Pure: a node's total power over time and its devices' recorded start times, for the report.

What a breaker sees is the node's sum, not any one card, so the report plots the sum of every
device's ``power_w`` per sampler tick (the sampler stamps every device of one tick with the same
``elapsed_s``; a device without a reading at a tick keeps its last one) and marks when each
device actually started (``device-start`` events). From those start times it also counts the
most devices that were ramping at once (started within ``ramp.step_s`` of one another), the
figure the ramp promises to keep at or below ``ramp.max_concurrent``.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd

from burnin.reports.timeline import decimate
from burnin.store import RunData

_MAX_POINTS = 300


def max_ramping(starts: list[float], step_s: float) -> int:
    """Most devices inside one ramp window: starts ``s`` with ``t - step_s < s <= t``."""
    if step_s <= 0 or not starts:
        return len(starts)
    ordered = sorted(starts)
    return max(sum(1 for s in ordered if t - step_s < s <= t) for t in ordered)


def _total_power(samples: list[dict[str, Any]]) -> pd.Series:
    clean = _clean_columns(samples)
    if clean is not None:
        return _summed(*clean)
    kept = [
        s
        for s in samples
        if isinstance(s.get("device"), int) and isinstance(s.get("power_w"), int | float)
    ]
    # Column by column: a frame of every field of every sample costs far more, once per node.
    frame = pd.DataFrame(
        {k: [s.get(k) for s in kept] for k in ("device", "elapsed_s", "power_w")},
        columns=["device", "elapsed_s", "power_w"],
    )
    if frame.empty:
        return pd.Series(dtype=float)
    by_tick = frame.pivot_table(
        index="elapsed_s", columns="device", values="power_w", aggfunc="last"
    )
    return by_tick.sort_index().ffill().sum(axis=1, min_count=1).dropna()


def _clean_columns(
    samples: list[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(elapsed_s, device, power_w) of every sample where each has all three as a sampler
    writes them (finite floats, an integer device); None otherwise, for the general path."""
    if not samples:
        return None
    columns = [list(map(dict.get, samples, repeat(k))) for k in ("elapsed_s", "device", "power_w")]
    kinds = [set(map(type, c)) for c in columns]
    if not (kinds[0] == {float} and kinds[1] == {int} and kinds[2] == {float}):
        return None
    t, power = np.array(columns[0], dtype=float), np.array(columns[2], dtype=float)
    if not (np.isfinite(t).all() and np.isfinite(power).all()):
        return None
    return t, np.array(columns[1], dtype=np.int64), power


def _summed(t: np.ndarray, device: np.ndarray, power: np.ndarray) -> pd.Series:
    """The general path's pivot table for clean columns, built without a group-by: each
    device's last reading at each tick (one row per tick, one column per device, in the same
    memory order), then the same forward fill and row sums, so each total is the same float."""
    ticks, row = np.unique(t, return_inverse=True)
    devices, col = np.unique(device, return_inverse=True)
    # The last reading of each (tick, device) cell: the first one met reading backwards.
    cells, first = np.unique((row * len(devices) + col)[::-1], return_index=True)
    grid = np.full(len(ticks) * len(devices), np.nan)
    grid[cells] = power[::-1][first]
    by_tick = pd.DataFrame(
        grid.reshape(len(ticks), len(devices)),
        index=pd.Index(ticks, name="elapsed_s"),
        columns=pd.Index(devices, name="device"),
    )
    return by_tick.ffill().sum(axis=1, min_count=1).dropna()


def node_power(run: RunData) -> tuple[list[dict[str, Any]], dict[str, list[list[float]]]]:
    """Per node: peak/mean total power and device starts; and the plot series per node."""
    step_s = run.manifest.get("config", {}).get("ramp", {}).get("step_s")
    if isinstance(step_s, bool) or not isinstance(step_s, int | float):
        step_s = 0.0
    entries: list[dict[str, Any]] = []
    series: dict[str, list[list[float]]] = {}
    for host, node in sorted(run.nodes.items()):
        starts = [
            {"device": e["device"], "elapsed_s": float(e["elapsed_s"])}
            for e in node.events
            if e.get("kind") == "device-start"
            and isinstance(e.get("device"), int)
            and isinstance(e.get("elapsed_s"), int | float)
        ]
        total = _total_power(node.samples)
        points = decimate([[float(t), round(float(w), 3)] for t, w in total.items()], _MAX_POINTS)
        if len(points) >= 2:
            series[host] = points
            x0, x1 = points[0][0], points[-1][0]
            for start in starts:
                frac = (start["elapsed_s"] - x0) / ((x1 - x0) or 1.0)
                start["x_frac"] = round(frac, 4) if 0.0 <= frac <= 1.0 else None
        else:
            for start in starts:
                start["x_frac"] = None
        entries.append(
            {
                "node": host,
                "peak_w": round(float(total.max()), 3) if len(total) else None,
                "mean_w": round(float(total.mean()), 3) if len(total) else None,
                "readings": len(total),
                "device_starts": starts,
                "max_ramping": max_ramping([s["elapsed_s"] for s in starts], float(step_s)),
                "ramp_step_s": float(step_s),
            }
        )
    return entries, series


def node_totals(run: RunData) -> dict[str, pd.Series]:
    """Each node's total power (W) per sampler tick (elapsed_s), for the rack's sum."""
    return {host: _total_power(node.samples) for host, node in run.nodes.items()}
