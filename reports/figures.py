"""Pure: the figures machine outputs add to a report (energy, cost, time spent per kernel).

Energy comes from NVML's total-energy counter (``energy_j`` in the samples, in joules; NVIDIA
NVML API reference, ``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver last
loaded) and, between two samples where the counter is missing or went backwards (a driver
reload restarts it), from the trapezoid of ``power_w`` over that interval. Every interval is
counted at most once and a counter reset is never read as a jump, so the energy of a card is
never more than its highest power draw times the time between its first and last sample.

Cost is energy times ``energy.price_per_kwh`` from the run's effective config (the manifest), in
``energy.currency``; no price, no cost. Kernel durations come from the worker's
``kernel-start`` record to that kernel's result (or to whatever record ended it).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

J_PER_KWH = 3.6e6
# Records after which a kernel's time is over: its result, the next kernel, the end, an error.
_ENDS = ("result", "kernel-start", "done", "error")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def energy_j(samples: Iterable[Mapping[str, Any]]) -> float | None:
    """Joules one card drew over its samples; None when no interval has a reading."""
    points: dict[float, tuple[float | None, float | None]] = {}
    for s in samples:
        t = _number(s.get("elapsed_s"))
        if t is None:
            continue
        counter, watts = _number(s.get("energy_j")), _number(s.get("power_w"))
        old = points.get(t, (None, None))  # two samples at one instant: keep what each has
        points[t] = (
            counter if counter is not None else old[0],
            watts if watts is not None else old[1],
        )
    ordered = sorted(points.items())
    total, known = 0.0, False
    for (t0, (c0, w0)), (t1, (c1, w1)) in itertools.pairwise(ordered):
        if c0 is not None and c1 is not None and c1 >= c0:
            total, known = total + (c1 - c0), True
        elif w0 is not None and w1 is not None:
            total, known = total + max(0.0, (w0 + w1) / 2 * (t1 - t0)), True
    return total if known else None


def energy_kwh(samples: Iterable[Mapping[str, Any]]) -> float | None:
    joules = energy_j(samples)
    return None if joules is None else joules / J_PER_KWH


def price(manifest: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """``(price_per_kwh, currency)`` from the run's effective config; (None, None) if unset."""
    section = (manifest.get("config") or {}).get("energy") or {}
    per_kwh = _number(section.get("price_per_kwh"))
    if per_kwh is None:
        return None, None
    return per_kwh, section.get("currency") or None


def _sum(values: Iterable[Any]) -> float | None:
    known = [v for v in values if _number(v) is not None]
    return round(sum(known), 6) if known else None


def add_energy(context: dict[str, Any], manifest: Mapping[str, Any]) -> None:
    """Energy per node and cost per node and run, from the cards' ``energy_kwh`` metrics."""
    per_kwh, currency = price(manifest)

    def cost(kwh: float | None) -> float | None:
        return None if kwh is None or per_kwh is None else round(kwh * per_kwh, 6)

    for node in context["nodes"]:
        kwh = _sum(
            g["metrics"].get("energy_kwh") for g in context["gpus"] if g["node"] == node["node"]
        )
        node["energy_kwh"], node["cost"] = kwh, cost(kwh)
    run_kwh = _sum(g["metrics"].get("energy_kwh") for g in context["gpus"])
    context["energy_kwh"] = run_kwh
    context["cost"] = (
        {"amount": cost(run_kwh), "currency": currency, "price_per_kwh": per_kwh}
        if per_kwh is not None
        else None
    )


def kernel_seconds(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds each kernel of one device ran, summed over its runs, by kernel name."""
    timed = sorted(
        (t, i, r) for i, r in enumerate(records) if (t := _number(r.get("elapsed_s"))) is not None
    )
    out: dict[str, float] = {}
    for pos, (start, _i, record) in enumerate(timed):
        if record.get("type") != "kernel-start" or not isinstance(record.get("kernel"), str):
            continue
        end = next(
            (t for t, _j, r in timed[pos + 1 :] if r.get("type") in _ENDS),
            timed[-1][0],
        )
        name = record["kernel"]
        out[name] = round(out.get(name, 0.0) + max(0.0, end - start), 6)
    return out
