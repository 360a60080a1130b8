"""Health checks from telemetry and limits: ``thermal``, ``throttle``, ``power`` and ``fan``.

``thermal`` compares the peak temperatures under stress with the card's own NVML thresholds
(slowdown, memory maximum, the thermal margin) and ``warn_temp_c``, and its settled temperature
with same-SKU peers drawing the same power (a card that sheds heat worse: dried paste or pads,
a loose heatsink); ``throttle`` counts the clock-event reasons active while a kernel ran (HW
slowdown, HW thermal and power-brake bits mean clocks halved: cooling, PSU or board trouble,
nvml.h); ``power`` compares the enforced power limit with the card's default, the default with
the SKU's TDP (a lowered cap costs throughput, a low default suggests another board) and the
power drawn under load with its peers' under the same kernels (DCGM's "did not reach desired
power"); ``fan`` flags fans stopped or not turning while the card is hot. A device without the
sensor gets SKIP, never PASS; an ``inspect`` snapshot (no run) gets ``power`` only, the others
need samples.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from burnin.inventory import card_sku
from burnin.verdicts.findings import (
    Findings,
    full_load,
    loaded_samples,
    values,
)
from burnin.verdicts.limits import limit, same_as
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict, is_cpu, ran
from burnin.verdicts.reference import MIN_PEERS, PeerThresholds, peer_group, robust_z
from burnin.verdicts.registry import check

# Clock-event reasons that mean clocks were cut by half or more (nvml.h, reference/nvml.md §2.7).
_HW_REASONS = {
    "hw_slowdown": "inspect-cooling",
    "hw_thermal_slowdown": "inspect-cooling",
    "hw_power_brake_slowdown": "reseat",  # an external power brake: PSU or power cabling
}
# Normal under a full load (Azure NHC ignores idle and SW power cap, nvml.md §2.7).
_BENIGN = {"gpu_idle", "sw_power_cap"}


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


@dataclass(frozen=True, kw_only=True)
class PowerThresholds:
    power_limit_tolerance: float = limit(
        0.02,
        unit="fraction of the default limit",
        source="limits are set in whole watts; 2 % absorbs the rounding on a 72 W L4",
        hi=1,
    )
    power_limit_fail_ratio: float = limit(
        0.85,
        unit="fraction of the default limit or SKU TDP",
        source="just under the lowest stock setting (H100 PCIe 300 of 350 W = 0.857)",
        hi=1,
    )
    power_reach_warn_ratio: float = limit(
        0.80,
        unit="fraction of the peer median power",
        source="DCGM targeted_power fails a card that 'did not reach desired power minimum' "
        "(dcgm_errors.h); 0.8 leaves room for the ±5 % DCGM tolerates around its target",
        hi=1,
    )
    peer_z: float = same_as(PeerThresholds, "peer_z")
    peer_mad_floor: float = same_as(PeerThresholds, "peer_mad_floor")


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


@check("throttle", needs=("telemetry",), cpu=False, thresholds=ThrottleThresholds)
def throttle(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Clock-event reasons active under load (HW slowdown, thermal, power brake)."""
    if is_cpu(gpu) or not ran(gpu):
        return
    f = Findings("throttle")
    loaded = [s for s in loaded_samples(gpu) if "throttle_reasons" not in s.get("unsupported", ())]
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


@check("power", needs=("inventory",), cpu=False, thresholds=PowerThresholds)
def power(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Power limit vs the card's default and SKU TDP; power reached vs peers under load."""
    if is_cpu(gpu):
        return
    inv, f = gpu.inventory, Findings("power")
    default_w = inv.get("power_limit_default_w")
    enforced = [v for v in (inv.get("power_limit_enforced_w"),) if isinstance(v, int | float)]
    enforced += gpu.sample_values("power_limit_w")
    t = ctx.limits(PowerThresholds)
    tol, fail_ratio = t.power_limit_tolerance, t.power_limit_fail_ratio
    if not isinstance(default_w, int | float) or not default_w:
        f.gap("default power limit not reported")
    elif not enforced:
        f.gap("enforced power limit not reported")
    else:
        low_w = min(enforced)
        if low_w < default_w * (1 - tol):
            f.problem(
                Status.FAIL if low_w < default_w * fail_ratio else Status.WARN,
                f"power limit lowered to {low_w:g} W, below the card's default of {default_w:g} W:"
                f" it will run slower; restore the default (nvidia-smi -pl {default_w:g}) "
                "and re-test",
                observed=low_w,
                limit=default_w,
                unit="W",
                action="retest",
            )
        else:
            f.ok(f"power limit {low_w:g} W = default", observed=low_w, limit=default_w, unit="W")
        _default_vs_sku(f, gpu, float(default_w), fail_ratio)
    peak = gpu.sample_values("power_w")
    if peak and f.items and max(f.items, key=lambda i: i.status).status == Status.PASS:
        f.ok(f"peak draw {max(peak):g} W")
    _power_vs_peers(f, gpu, ctx)
    yield f.verdict()


# -- against peers under the same load ---------------------------------------------------------


def under_load(gpu: GpuData, ctx: CheckContext) -> tuple[float | None, float | None]:
    """(median power_w, settled temp_c) while a kernel ran; None where not sampled.

    The settled temperature is the median over the second half of the loaded samples, past
    the first minutes' climb, so a card that started later is not judged cooler for it.
    """

    def compute() -> tuple[float | None, float | None]:
        loaded = loaded_samples(gpu)
        power = values(loaded, "power_w")
        temps = values(loaded[len(loaded) // 2 :], "temp_c")
        return (
            statistics.median(power) if power else None,
            statistics.median(temps) if temps else None,
        )

    return ctx.memo(("under_load", gpu.node, gpu.index), compute)


def _peers(gpu: GpuData, ctx: CheckContext) -> list[GpuData]:
    """Same SKU (peer group), the same planned kernels, run to the end: the same load."""
    group, kernels = peer_group(gpu), sorted(gpu.planned_kernels)
    return [
        g
        for g in ctx.fleet
        if g is not gpu
        and full_load(g)
        and peer_group(g) == group
        and sorted(g.planned_kernels) == kernels
    ]


def _thermal_vs_peers(f: Findings, gpu: GpuData, ctx: CheckContext) -> None:
    power_w, temp_c = under_load(gpu, ctx)
    if power_w is None or temp_c is None or not full_load(gpu):
        return
    t = ctx.limits(ThermalThresholds)
    band = t.thermal_peer_power_band
    peers = [
        t
        for g in _peers(gpu, ctx)
        for p, t in [under_load(g, ctx)]
        if p is not None and t is not None and abs(p - power_w) <= band * power_w
    ]
    if len(peers) < MIN_PEERS - 1:
        return  # too few cards at this power to say what "normal" is; the limits still apply
    median_c = statistics.median(peers)
    over_c = temp_c - median_c
    warn_c = t.thermal_peer_warn_c
    z = robust_z(temp_c, [*peers, temp_c], 1.0)  # 1 C: identical cards read alike
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


def _power_vs_peers(f: Findings, gpu: GpuData, ctx: CheckContext) -> None:
    power_w, _temp = under_load(gpu, ctx)
    if power_w is None or not full_load(gpu):
        return
    peers = [p for g in _peers(gpu, ctx) if (p := under_load(g, ctx)[0]) is not None]
    if len(peers) < MIN_PEERS - 1:
        return
    median_w = statistics.median(peers)
    ratio = power_w / median_w if median_w else 1.0
    t = ctx.limits(PowerThresholds)
    warn_ratio = t.power_reach_warn_ratio
    z = robust_z(power_w, [*peers, power_w], t.peer_mad_floor * median_w)
    text = (
        f"drew {power_w:.0f} W under load = {ratio:.2f} x the median of {len(peers)} peers "
        f"under the same kernels ({median_w:.0f} W)"
    )
    if ratio < warn_ratio and z <= -t.peer_z:
        f.problem(
            Status.WARN,
            f"{text}: it did not reach its peers' power; a lowered limit, a power cable or "
            "connector problem, or clocks held down; see throttle and re-test",
            observed=round(power_w, 1),
            limit=round(warn_ratio * median_w, 1),
            unit="W",
            action="retest",
        )
    else:
        f.ok(text, observed=round(power_w, 1), unit="W")


def _default_vs_sku(f: Findings, gpu: GpuData, default_w: float, fail_ratio: float) -> None:
    sku = card_sku(gpu.inventory)
    if sku is None or not sku.is_verified("tdp_w"):
        return  # an assumed TDP (e.g. a configurable range's top) is no evidence
    if default_w < sku.tdp_w * fail_ratio:
        f.problem(
            Status.WARN,
            f"boots with a {default_w:g} W limit; {sku.key} ships at {sku.tdp_w:g} W: a "
            "down-rated or different board; compare the label and ask the seller",
            observed=default_w,
            limit=sku.tdp_w,
            unit="W",
            action="return-to-seller",
        )


@check("fan", needs=("telemetry",), cpu=False, thresholds=FanThresholds)
def fan(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Fans stopped or not turning while the card is hot."""
    if is_cpu(gpu) or not ran(gpu):
        return
    f = Findings("fan")
    with_fans = [s for s in gpu.samples if _number(s, "fan_pct") or _number(s, "fan_rpm")]
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
