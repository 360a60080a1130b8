"""Health checks from telemetry: ``thermal`` (peak temperature under stress).

The FAIL line is the card's own hardware-slowdown threshold from NVML (or ``fail_temp_c`` when
configured): at that point the card cuts its clocks. WARN starts at ``warn_temp_c``. A device
without a temperature sensor gets SKIP, never PASS.
"""

from __future__ import annotations

from collections.abc import Iterator

from burnin.verdicts import CheckContext, GpuData, Status, Verdict, check


@check("thermal")
def thermal(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    temps = gpu.sample_values("temp_c")
    if not temps:
        yield Verdict(
            check="thermal",
            status=Status.SKIP,
            unit="C",
            message="no temperature readings (sensor not supported or no samples)",
        )
        return
    peak_c = max(temps)
    warn_c = float(ctx.thresholds.get("warn_temp_c", 85.0))
    fail_c = float(ctx.thresholds.get("fail_temp_c", 0.0) or 0.0) or gpu.inventory.get(
        "slowdown_temp_c"
    )
    if fail_c and peak_c >= fail_c:
        yield Verdict(
            check="thermal",
            status=Status.FAIL,
            observed=peak_c,
            limit=fail_c,
            unit="C",
            action="inspect-cooling",
            message=f"reached {peak_c:g} C, at or above the slowdown limit of "
            f"{fail_c:g} C; inspect airflow, fans and heatsink contact",
        )
    elif peak_c > warn_c:
        yield Verdict(
            check="thermal",
            status=Status.WARN,
            observed=peak_c,
            limit=warn_c,
            unit="C",
            action="inspect-cooling",
            message=f"reached {peak_c:g} C, above the warning level of {warn_c:g} C",
        )
    else:
        yield Verdict(
            check="thermal",
            status=Status.PASS,
            observed=peak_c,
            limit=warn_c,
            unit="C",
            message=f"peak {peak_c:g} C",
        )
