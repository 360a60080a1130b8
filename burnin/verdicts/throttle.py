"""``throttle``: the clock-event reasons active while a kernel ran.

HW slowdown, HW thermal and power-brake bits mean clocks cut by half or more (cooling, PSU or
board trouble, nvml.h); SW thermal slowdown warns; the power cap is normal at full load.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import loaded_in_run
from burnin.verdicts.registry import check

# Clock-event reasons that mean clocks were cut by half or more (nvml.h, docs/nvml.md §2.7).
_HW_REASONS = {
    "hw_slowdown": "inspect-cooling",
    "hw_thermal_slowdown": "inspect-cooling",
    "hw_power_brake_slowdown": "reseat",  # an external power brake: PSU or power cabling
}


# Normal under a full load (Azure NHC ignores idle and SW power cap, docs/nvml.md §2.7).
_BENIGN = {"gpu_idle", "sw_power_cap"}


@dataclass(frozen=True, kw_only=True)
class ThrottleThresholds:
    throttle_hw_fail_samples: int = limit(
        2,
        unit="samples under load",
        source="HW slowdown halves clocks or more (nvml.h); one sample alone may be a "
        "P-state change, which nvml.h says can show the bit",
        lo=1,
        hi=1e9,
    )


@check("throttle", needs=("telemetry",), cpu=False, thresholds=ThrottleThresholds)
def throttle(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Clock-event reasons active under load (HW slowdown, thermal, power brake)."""
    f = Findings("throttle")
    loaded = [
        s for s in loaded_in_run(gpu, ctx) if "throttle_reasons" not in s.get("unsupported", ())
    ]
    if not loaded:
        f.gap("no clock-event reasons sampled under load")
        yield f.verdict()
        return
    seen = Counter(r for s in loaded for r in s.get("throttle_reasons") or ())
    fail_n = ctx.limits(ThrottleThresholds).throttle_hw_fail_samples
    for reason, action in _HW_REASONS.items():
        if n := seen.get(reason, 0):
            f.problem(
                Status.FAIL if n >= fail_n else Status.WARN,
                f"{reason} active in {n} of {len(loaded)} samples under load: clocks cut by half "
                "or more; "
                + (
                    "check the PSU and power cabling"
                    if action == "reseat"
                    else "inspect airflow, fans and heatsink contact"
                ),
                observed=n,
                limit=fail_n,
                unit="samples",
                action=action,
            )
    if n := seen.get("sw_thermal_slowdown", 0):
        f.problem(
            Status.WARN,
            f"sw_thermal_slowdown active in {n} of {len(loaded)} samples under load: the driver "
            "held clocks down to stay under its temperature limits; inspect cooling",
            observed=n,
            limit=0,
            unit="samples",
            action="inspect-cooling",
        )
    handled = {*_HW_REASONS, "sw_thermal_slowdown", *_BENIGN}
    for reason in sorted(set(seen) - handled):
        f.problem(
            Status.WARN,
            f"{reason} active in {seen[reason]} of {len(loaded)} samples under load: clocks held "
            "by a setting or limit other than power or temperature; check clock settings",
            observed=seen[reason],
            limit=0,
            unit="samples",
            action="retest",
        )
    capped = seen.get("sw_power_cap", 0)
    f.ok(
        f"no HW slowdown or thermal throttling in {len(loaded)} samples under load"
        + (f" (power cap held clocks in {capped}, normal at full load)" if capped else ""),
        observed=0,
        unit="samples",
    )
    yield f.verdict()
