"""Pure: one card's summary figures for the history, from its report metrics and its samples.

The same function serves the ingest (report.json + samples.jsonl of a finished run) and the
``regression`` check (the store of the run being judged), so a card is compared with its past
on figures computed the same way. ``load_temp_c``/``load_power_w`` are means over the samples
taken under load (power at least :data:`LOAD_POWER_SHARE` of the card's peak in this run), so
temperature is compared at the same power; ``ecc_sbe_per_h`` is the growth of the volatile
corrected (single-bit) ECC counter over the sampled time.
"""

from __future__ import annotations

import math
from typing import Any

# burnin's own choice, no public source: a sample counts as "under load" when the card draws at
# least 80 % of its peak power in this run, which leaves out idle, ramp and cool-down samples.
LOAD_POWER_SHARE = 0.8

FIGURES = (
    "matmul_tflops",
    "membw_gbps",
    "busbw_gbps",
    "temp_c_per_kw",
    "ecc_sbe_per_h",
)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def card_figures(metrics: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The history figures of one card in one run (None where not measured)."""
    out: dict[str, Any] = {
        "matmul_tflops": _num(metrics.get("matmul_tflops")),
        "membw_gbps": _num(metrics.get("membw_gbps")),
        "busbw_gbps": _num(metrics.get("allreduce_busbw_gbps")),
        "max_temp_c": _num(metrics.get("max_temp_c")),
        "energy_kwh": _num(metrics.get("energy_kwh")),
        "load_temp_c": None,
        "load_power_w": None,
        "temp_c_per_kw": None,
        "ecc_sbe_per_h": None,
    }
    powered = [
        (p, t)
        for s in samples
        if (p := _num(s.get("power_w"))) and (t := _num(s.get("temp_c"))) is not None
    ]
    if powered:
        peak_w = max(p for p, _ in powered)
        loaded = [(p, t) for p, t in powered if p >= LOAD_POWER_SHARE * peak_w]
        out["load_power_w"] = round(sum(p for p, _ in loaded) / len(loaded), 3)
        out["load_temp_c"] = round(sum(t for _, t in loaded) / len(loaded), 3)
        if out["load_power_w"] > 0:
            out["temp_c_per_kw"] = round(out["load_temp_c"] * 1000.0 / out["load_power_w"], 4)
    ecc = [
        (t, c)
        for s in samples
        if (t := _num(s.get("elapsed_s"))) is not None
        and (c := _num(s.get("ecc_volatile_sbe"))) is not None
    ]
    if len(ecc) >= 2 and ecc[-1][0] > ecc[0][0]:
        hours = (ecc[-1][0] - ecc[0][0]) / 3600.0
        out["ecc_sbe_per_h"] = round(max(0.0, ecc[-1][1] - ecc[0][1]) / hours, 4)
    return out
