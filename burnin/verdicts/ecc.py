"""``ecc``: volatile and lifetime ECC counts and their growth during the run.

Volatile uncorrectable errors fail the card (DCGM fails on any); corrected errors above Azure
NHC's line fail it; corrected errors growing under stress warn; ECC switched off on a datacenter
card warns. It reads the inventory, so ``burnin inspect`` judges a seller's dump with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from burnin.skus import resolve
from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import growth_per_min, values
from burnin.verdicts.registry import check


@dataclass(frozen=True, kw_only=True)
class EccThresholds:
    ecc_dbe_max: int = limit(
        0,
        unit="uncorrectable errors",
        source="DCGM health fails on any volatile DBE (DcgmHealthWatch.cpp)",
        hi=1e12,
    )
    ecc_sbe_fail: int = limit(
        20_000_000,
        unit="corrected errors",
        source="Azure NHC check_gpu_ecc 20000000 (nd96asr_v4.conf, nd96isr_h100_v5.conf)",
        hi=1e15,
    )
    ecc_sbe_warn_per_min: float = limit(
        1.0,
        unit="corrected errors per minute",
        source="NVIDIA publishes no rate (XID 92 'high single-bit ECC rate' has no number); "
        "burnin warns at 1 per minute",
        hi=1e12,
    )


@check("ecc", needs=("inventory",), cpu=False, thresholds=EccThresholds)
def ecc(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Volatile and lifetime ECC counts and their growth during the run."""
    inv, f = gpu.inventory, Findings("ecc")
    sku = resolve(inv)
    name = str(inv.get("name") or "")
    if inv.get("ecc_enabled") is False:
        if sku is not None and sku.ecc_capable and "geforce" not in name.lower():
            f.problem(
                Status.WARN,
                "ECC is switched off on a datacenter card: memory errors go unseen; enable it "
                "(nvidia-smi -e 1, then reboot) and re-test",
                observed="off",
                action="retest",
            )
        else:
            f.gap("ECC is off")
    dbe = values([inv, *gpu.samples], "ecc_volatile_dbe")
    sbe = values([inv, *gpu.samples], "ecc_volatile_sbe")
    t = ctx.limits(EccThresholds)
    dbe_max, sbe_fail = t.ecc_dbe_max, t.ecc_sbe_fail
    if dbe and max(dbe) > dbe_max:
        f.problem(
            Status.FAIL,
            f"{max(dbe):g} uncorrectable ECC errors since the driver loaded (DCGM fails on "
            "any): the memory corrupts data, RMA the card",
            observed=max(dbe),
            limit=dbe_max,
            unit="DBE",
            action="rma",
        )
    lifetime = inv.get("ecc_aggregate_sbe")
    worst_sbe = max([*sbe, lifetime if isinstance(lifetime, int) else 0], default=0)
    if worst_sbe > sbe_fail:
        f.problem(
            Status.FAIL,
            f"{worst_sbe:g} corrected ECC errors, above {sbe_fail} (Azure NHC): failing memory, "
            "RMA the card",
            observed=worst_sbe,
            limit=sbe_fail,
            unit="SBE",
            action="rma",
        )
    rate = growth_per_min(gpu, "ecc_volatile_sbe")
    warn_rate = t.ecc_sbe_warn_per_min
    if rate is not None and rate >= warn_rate and rate > 0:
        f.problem(
            Status.WARN,
            f"corrected ECC errors grew by {rate:.3g} per minute under stress (warning at "
            f"{warn_rate:g}): weakening memory; re-test and watch the trend",
            observed=round(rate, 3),
            limit=warn_rate,
            unit="SBE/min",
            action="retest",
        )
    if dbe or sbe:
        f.ok(
            f"{max(dbe, default=0):g} uncorrectable, {max(sbe, default=0):g} corrected ECC "
            "errors since the driver loaded"
        )
    elif inv.get("ecc_enabled") is not False:
        f.gap("volatile ECC counters not reported")
    yield f.verdict()
