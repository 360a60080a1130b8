"""Pure: judge a card's figures against its own past (trends, the ``regression`` check).

A card's history for one figure is a list of points ``(started_at, value, run_id)``. Its
baseline is the median of the past points (robust to one odd night), its change is the latest
value against that baseline, and its slope is the least-squares line through all points, per
day. A figure has a direction: throughput, memory bandwidth and bus bandwidth get worse when
they fall, temperature per kW and the corrected-ECC rate when they rise. The limits live in
:class:`burnin.verdicts.regression.Thresholds`, each with its unit and where it comes from.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from burnin.history.keys import parse_time

if TYPE_CHECKING:
    from burnin.verdicts.regression import Thresholds


# figure -> (threshold field, +1 when a rise is bad / -1 when a fall is bad, unit, words)
RULES: dict[str, tuple[str, int, str, str]] = {
    "matmul_tflops": ("regression_matmul_drop_frac", -1, "TFLOP/s", "matmul throughput"),
    "membw_gbps": ("regression_membw_drop_frac", -1, "GB/s", "memory bandwidth"),
    "busbw_gbps": ("regression_busbw_drop_frac", -1, "GB/s", "all-reduce bus bandwidth"),
    "temp_c_per_kw": (
        "regression_temp_per_kw_rise_frac",
        1,
        "C/kW",
        "temperature at the same power",
    ),
    "ecc_sbe_per_h": ("regression_ecc_rise_per_h", 1, "errors/h", "corrected ECC rate"),
}


@dataclass(frozen=True)
class Trend:
    figure: str
    baseline: float
    latest: float
    change: float  # relative (fraction) for most figures; absolute errors/h for ECC
    slope_per_day: float
    runs: tuple[str, ...]
    flagged: bool

    @property
    def unit(self) -> str:
        return RULES[self.figure][2]

    def describe(self) -> str:
        words = RULES[self.figure][3]
        if self.figure == "ecc_sbe_per_h":
            moved = f"{self.change:+.1f} errors/h"
        else:
            moved = f"{self.change * 100:+.1f} %"
        return (
            f"{words} {self.latest:.4g} {self.unit} vs its own median {self.baseline:.4g} over "
            f"{len(self.runs) - 1} past run(s) ({moved}; slope {self.slope_per_day:+.4g} "
            f"{self.unit}/day)"
        )


def slope_per_day(points: list[tuple[datetime, float]]) -> float:
    """Least-squares slope of value over time, in value units per day (0 for one instant)."""
    if len(points) < 2:
        return 0.0
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / 86400.0 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def judge(
    figure: str,
    past: list[tuple[Any, float, str]],
    latest: tuple[Any, float, str],
    thresholds: Thresholds,
) -> Trend | None:
    """The trend of ``figure`` for one card; None without enough past or a usable baseline."""
    if figure not in RULES or len(past) < thresholds.regression_min_past_runs:
        return None
    field_name, direction, _, _ = RULES[figure]
    limit = getattr(thresholds, field_name)
    baseline = statistics.median(v for _, v, _ in past)
    value = latest[1]
    if figure == "ecc_sbe_per_h":
        change = value - baseline
        flagged = change > limit
    else:
        if baseline <= 0:
            return None
        change = (value - baseline) / baseline
        flagged = change * direction > limit
    points = sorted(
        ((stamp, v) for s, v, _ in [*past, latest] if (stamp := parse_time(s)) is not None),
        key=lambda p: p[0],
    )
    runs = tuple(r for _, _, r in [*past, latest])
    return Trend(figure, baseline, value, change, slope_per_day(points), runs, flagged)
