"""``thermal``: temperatures under stress against the limits and against same-power peers.

The peak temperature is compared with ``warn_temp_c`` and the card's own NVML thresholds
(slowdown, memory maximum, the thermal margin), and the settled temperature under load with
same-SKU peers drawing the same power (a card that sheds heat worse: dried paste or pads, a
loose heatsink). A device without the sensor gets SKIP, never PASS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit, same_as
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict, is_cpu, ran
from burnin.verdicts.peers import (
    PeerThresholds,
    peer_stats,
    same_load_under_load,
    under_load,
)
from burnin.verdicts.records import full_load
from burnin.verdicts.registry import check


@dataclass(frozen=True, kw_only=True)
class ThermalThresholds:
    warn_temp_c: float = limit(
        85.0, unit="C", source="Meta GCM gpu_temperature check's example limit", hi=150
    )
    fail_temp_c: float = limit(
        0.0,
        unit="C",
        source="0 = the card's own HW slowdown threshold from NVML "
        "(nvmlDeviceGetTemperatureThreshold)",
        hi=150,
    )
    thermal_peer_warn_c: float = limit(
        10.0,
        unit="C above the peer median",
        source="NVIDIA publishes no thermal-resistance limit; burnin's line, above the few "
        "degrees chassis slots differ (also a robust-z outlier: peer_z)",
        hi=150,
    )
    thermal_peer_power_band: float = limit(
        0.10,
        unit="fraction of the card's power",
        source="'the same power': peers whose median power under load is this close (burnin)",
        hi=1,
    )
    peer_z: float = same_as(PeerThresholds, "peer_z")


@check("thermal", needs=("telemetry",), thresholds=ThermalThresholds)
def thermal(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Temperature vs the warning and slowdown limits, and vs peers at the same power."""
    temps = gpu.sample_values("temp_c")
    if not temps:
        if is_cpu(gpu) or ran(gpu):
            yield Verdict(
                check="thermal",
                status=Status.SKIP,
                unit="C",
                message="no temperature readings (sensor not supported or no samples)",
            )
        return
    inv, f = gpu.inventory, Findings("thermal")
    peak_c = max(temps)
    t = ctx.limits(ThermalThresholds)
    warn_c = t.warn_temp_c
    fail_c = t.fail_temp_c or inv.get("slowdown_temp_c")
    if fail_c and peak_c >= fail_c:
        f.problem(
            Status.FAIL,
            f"reached {peak_c:g} C, at or above the slowdown limit of {fail_c:g} C: the card "
            "cuts its clocks; inspect airflow, fans and heatsink contact",
            observed=peak_c,
            limit=fail_c,
            unit="C",
            action="inspect-cooling",
        )
    elif peak_c > warn_c:
        f.problem(
            Status.WARN,
            f"reached {peak_c:g} C, above the warning level of {warn_c:g} C: check the airflow",
            observed=peak_c,
            limit=warn_c,
            unit="C",
            action="inspect-cooling",
        )
    else:
        f.ok(f"peak {peak_c:g} C", observed=peak_c, limit=warn_c, unit="C")
    mem = gpu.sample_values("mem_temp_c")
    mem_max = inv.get("mem_max_temp_c")
    if mem and mem_max and max(mem) >= mem_max:
        f.problem(
            Status.FAIL,
            f"memory reached {max(mem):g} C, at or above its slowdown limit of {mem_max:g} C: "
            "inspect cooling (thermal pads on used cards)",
            observed=max(mem),
            limit=mem_max,
            unit="C",
            action="inspect-cooling",
        )
    _thermal_vs_peers(f, gpu, ctx)
    margins = gpu.sample_values("temp_margin_c")
    if margins and min(margins) <= 0:
        f.problem(
            Status.FAIL,
            f"thermal margin fell to {min(margins):g} C: the card hit its nearest slowdown "
            "threshold; inspect cooling",
            observed=min(margins),
            limit=0,
            unit="C",
            action="inspect-cooling",
        )
    yield f.verdict()


# -- against peers under the same load ---------------------------------------------------------


def _thermal_vs_peers(f: Findings, gpu: GpuData, ctx: CheckContext) -> None:
    power_w, temp_c = under_load(gpu, ctx)
    if power_w is None or temp_c is None or not full_load(gpu):
        return
    t = ctx.limits(ThermalThresholds)
    band = t.thermal_peer_power_band
    peers = [
        t
        for p, t in same_load_under_load(gpu, ctx)
        if p is not None and t is not None and abs(p - power_w) <= band * power_w
    ]
    stats = peer_stats(temp_c, peers, floor=1.0)  # 1 C: identical cards read alike
    if stats is None:
        return  # too few cards at this power to say what "normal" is; the limits still apply
    median_c, z = stats.peer_median, stats.z
    over_c = temp_c - median_c
    warn_c = t.thermal_peer_warn_c
    text = (
        f"settled at {temp_c:.0f} C under load, {over_c:+.0f} C against the median of "
        f"{len(peers)} peers at the same power ({median_c:.0f} C at {power_w:.0f} W ±{band:.0%})"
    )
    if over_c >= warn_c and z >= t.peer_z:
        f.problem(
            Status.WARN,
            f"{text}: it sheds heat worse than its peers; check the heatsink contact, thermal "
            "paste or pads and the airflow at its slot",
            observed=round(over_c, 1),
            limit=warn_c,
            unit="C",
            action="inspect-cooling",
        )
    else:
        f.ok(text, observed=round(over_c, 1), limit=warn_c, unit="C")
