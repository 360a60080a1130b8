"""Pure: judge a card's figures against its own past (trends, the ``regression`` check).

A card's history for one figure is a list of points ``(started_at, value, run_id)``. Its
baseline is the median of the past points (robust to one odd night), its change is the latest
value against that baseline, and its slope is the least-squares line through all points, per
day. A figure has a direction: throughput, memory bandwidth and bus bandwidth get worse when
they fall, temperature per kW and the corrected-ECC rate when they rise. The limits live in
:class:`Thresholds`, each with its unit and where it comes from.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from burnin.history.ingest import parse_time


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """How far a card may move against its own past before it is flagged.

    No public source gives run-to-run limits for burn-in figures, so each value is burnin's own
    choice; the reason is given next to it.
    """

    # fraction of the card's own median; burnin's choice: well above the run-to-run spread of a
    # healthy card under the same profile (matmul cv under 1 % per run in the reports), small
    # enough to catch the "lost 6 % since acceptance" card before its peers notice.
    matmul_drop_frac: float = 0.05
    # fraction; burnin's choice, same reasoning for STREAM-like copy bandwidth.
    membw_drop_frac: float = 0.05
    # fraction; burnin's choice: all-reduce bus bandwidth varies more with the fabric than a
    # card's own kernels, so the same 5 % is applied to the node figure each card carries.
    busbw_drop_frac: float = 0.05
    # fraction of C per kW; burnin's choice: a card running 10 % hotter at the same power points
    # at dust, a failing fan or dried thermal paste, long before a slowdown threshold.
    temp_per_kw_rise_frac: float = 0.10
    # corrected (single-bit) ECC errors per hour above the card's own past median; burnin's
    # choice: NVIDIA documents corrected errors as harmless one by one (NVML
    # nvmlDeviceGetTotalEccErrors), so only a rate that grows is flagged.
    ecc_rise_per_h: float = 10.0
    # past runs needed before a card is judged against itself; 1 = from the second sweep on.
    min_past_runs: int = 1
    units: dict[str, str] = field(
        default_factory=lambda: {
            "matmul_drop_frac": "fraction",
            "membw_drop_frac": "fraction",
            "busbw_drop_frac": "fraction",
            "temp_per_kw_rise_frac": "fraction",
            "ecc_rise_per_h": "errors/h",
            "min_past_runs": "runs",
        }
    )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("units")
        return out


# figure -> (threshold field, +1 when a rise is bad / -1 when a fall is bad, unit, words)
RULES: dict[str, tuple[str, int, str, str]] = {
    "matmul_tflops": ("matmul_drop_frac", -1, "TFLOP/s", "matmul throughput"),
    "membw_gbps": ("membw_drop_frac", -1, "GB/s", "memory bandwidth"),
    "busbw_gbps": ("busbw_drop_frac", -1, "GB/s", "all-reduce bus bandwidth"),
    "temp_c_per_kw": ("temp_per_kw_rise_frac", 1, "C/kW", "temperature at the same power"),
    "ecc_sbe_per_h": ("ecc_rise_per_h", 1, "errors/h", "corrected ECC rate"),
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
    if figure not in RULES or len(past) < thresholds.min_past_runs:
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
