"""``power``: the power limit against the card's default and its SKU's TDP, and the power drawn.

A lowered enforced limit costs throughput; a default below the SKU's TDP suggests another
board; a card drawing well under its same-load peers' power did not reach it (DCGM's "did not
reach desired power"). An ``inspect`` snapshot is judged on its limits alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from burnin.skus import resolve
from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit, same_as
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.peers import PeerThresholds, same_load_power_stats, under_load
from burnin.verdicts.records import full_load
from burnin.verdicts.registry import check


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


@check("power", needs=("inventory",), cpu=False, thresholds=PowerThresholds)
def power(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Power limit vs the card's default and SKU TDP; power reached vs peers under load."""
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


def _power_vs_peers(f: Findings, gpu: GpuData, ctx: CheckContext) -> None:
    power_w, _temp = under_load(gpu, ctx)
    if power_w is None or not full_load(gpu):
        return
    t = ctx.limits(PowerThresholds)
    stats = same_load_power_stats(gpu, ctx, power_w, t.peer_mad_floor)
    if stats is None:
        return
    median_w, z = stats.peer_median, stats.z
    ratio = power_w / median_w if median_w else 1.0
    warn_ratio = t.power_reach_warn_ratio
    text = (
        f"drew {power_w:.0f} W under load = {ratio:.2f} x the median of {stats.peers} peers "
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
    sku = resolve(gpu.inventory)
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
