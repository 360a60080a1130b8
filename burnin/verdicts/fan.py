"""``fan``: fans stopped or not turning while the card is hot.

A passively cooled card (no fan readings) is SKIP: the chassis fans cool it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import values
from burnin.verdicts.registry import check


@dataclass(frozen=True, kw_only=True)
class FanThresholds:
    fan_hot_temp_c: float = limit(
        60.0,
        unit="C",
        source="zero-RPM fan modes stop fans only on a cool card; NVIDIA publishes no fan "
        "threshold, so this is burnin's line",
        hi=150,
    )
    fan_min_pct: float = limit(
        10.0,
        unit="%",
        source="below this while hot counts as stopped (NVML's % is the intended speed, "
        "RPM the measured one)",
        hi=100,
    )


@check("fan", needs=("telemetry",), cpu=False, thresholds=FanThresholds)
def fan(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Fans stopped or not turning while the card is hot."""
    f = Findings("fan")
    # The key test first: most cards sample no fan, and a fleet's samples are millions.
    with_fans = [
        s
        for s in gpu.samples
        if ("fan_pct" in s or "fan_rpm" in s) and (_number(s, "fan_pct") or _number(s, "fan_rpm"))
    ]
    if not with_fans:
        f.gap("no fan readings (a passively cooled card: the chassis fans cool it)")
        yield f.verdict()
        return
    t = ctx.limits(FanThresholds)
    hot_c, min_pct = t.fan_hot_temp_c, t.fan_min_pct
    hot = [s for s in with_fans if _number(s, "temp_c") and s["temp_c"] >= hot_c]
    stopped = [s for s in hot if _number(s, "fan_pct") and s["fan_pct"] < min_pct]
    # Commanded to turn (target or intended %), measured at 0 RPM: a dead or blocked fan.
    dead = [
        s
        for s in hot
        if _number(s, "fan_rpm")
        and s["fan_rpm"] == 0
        and max(values([s], "fan_target_pct") + values([s], "fan_pct"), default=0) >= min_pct
    ]
    if stopped:
        s = max(stopped, key=lambda x: x["temp_c"])
        f.problem(
            Status.FAIL,
            f"fans at {s['fan_pct']:g} % while the card was at {s['temp_c']:g} C (in "
            f"{len(stopped)} samples): stopped or failed fans; inspect the cooler",
            observed=s["fan_pct"],
            limit=min_pct,
            unit="%",
            action="inspect-cooling",
        )
    if dead:
        s = max(dead, key=lambda x: x["temp_c"])
        f.problem(
            Status.FAIL,
            f"fan commanded to turn but reads 0 RPM at {s['temp_c']:g} C: a dead or blocked "
            "fan; inspect the cooler",
            observed=0,
            unit="RPM",
            action="inspect-cooling",
        )
    pcts = values(hot or with_fans, "fan_pct")
    if hot:
        f.ok(
            f"fans at {min(pcts):g}-{max(pcts):g} % while at or above {hot_c:g} C"
            if pcts
            else f"fans turning while at or above {hot_c:g} C",
            observed=min(pcts) if pcts else None,
            limit=min_pct,
            unit="%",
        )
    elif any(p >= min_pct for p in pcts) or any(v > 0 for v in values(with_fans, "fan_rpm")):
        f.ok("fans turning (the card stayed below the hot line)")
    else:
        f.gap(f"the card never reached {hot_c:g} C, so stopped fans prove nothing")
    yield f.verdict()


def _number(sample: dict[str, Any], key: str) -> bool:
    return isinstance(sample.get(key), int | float) and not isinstance(sample.get(key), bool)
