"""Memory-health checks: ``wear``, ``ecc``, ``retired-pages`` and ``row-remap``.

A card's memory keeps its history in the InfoROM: lifetime (aggregate) ECC counts, retired pages
(Kepler to Volta) and remapped rows (Ampere and later). ``wear`` reads that history, mining
software in a dump's process list and, after a run, matmul TFLOP/s per watt against same-SKU
peers (DESIGN.md's "degraded perf/W") as evidence of a previous owner's use. The other three
judge each mechanism against the published limits (DCGM health and diag, Azure NHC, Meta GCM;
reference/nvml.md §3.1): a failed remap or a full retirement table is an RMA, pending work needs
a reset and a re-test, and volatile uncorrectable errors during a run fail the card. All four
read the inventory, so ``burnin inspect`` judges a seller's dump with them; ``ecc`` also reads
the samples of a run for growth under stress.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from burnin.inventory import card_sku
from burnin.verdicts.findings import (
    Findings,
    full_load,
    growth_per_min,
    loaded_samples,
    values,
)
from burnin.verdicts.limits import limit, same_as
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict, is_cpu
from burnin.verdicts.reference import PeerThresholds, last_result, peer_finding, peer_group
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


@dataclass(frozen=True, kw_only=True)
class RetiredPagesThresholds:
    retired_pages_fail: int = limit(
        63,
        unit="pages",
        source="DCGM_LIMIT_MAX_RETIRED_PAGES 63 (DcgmGPUHardwareLimits.h; Azure NHC: 62 "
        "with one pending = table full)",
        hi=1e6,
    )
    retired_pages_dbe_warn: int = limit(
        15,
        unit="pages",
        source="DCGM's soft limit 15 (it fails when the last week also grew; a snapshot has "
        "no dates, so burnin warns)",
        hi=1e6,
    )
    retired_pages_warn: int = limit(
        10, unit="pages", source="Meta GCM gpu_retired_pages default alert (> 10)", hi=1e6
    )


@dataclass(frozen=True, kw_only=True)
class RowRemapThresholds:
    remap_uncorrectable_fail: int = limit(
        512,
        unit="rows",
        source="DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE and Azure NHC: 512, the remapper's capacity",
        hi=1e6,
    )


@dataclass(frozen=True, kw_only=True)
class WearThresholds(PeerThresholds):
    wear_aggregate_sbe_warn: int = limit(
        1000,
        unit="lifetime corrected errors",
        source="no NVIDIA number exists; burnin warns 4 orders of magnitude below Azure "
        "NHC's 20,000,000 failure line",
        hi=1e15,
    )
    ecc_sbe_fail: int = same_as(EccThresholds, "ecc_sbe_fail")
    retired_pages_warn: int = same_as(RetiredPagesThresholds, "retired_pages_warn")


@check("wear", needs=("inventory",), cpu=False, thresholds=WearThresholds)
def wear(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Evidence of heavy past use: lifetime ECC, retired/remapped memory, mining, perf/W."""
    if is_cpu(gpu):
        return
    inv, f = gpu.inventory, Findings("wear")
    sbe, dbe = inv.get("ecc_aggregate_sbe"), inv.get("ecc_aggregate_dbe")
    if isinstance(dbe, int) and dbe > 0:
        f.problem(
            Status.WARN,
            f"{dbe} uncorrectable memory errors in the card's lifetime: a previous owner hit "
            "memory faults; burn it in fully before use and price it as worn",
            observed=dbe,
            limit=0,
            unit="lifetime DBE",
            action="retest",
        )
    if isinstance(sbe, int):
        t = ctx.limits(WearThresholds)
        fail, warn = t.ecc_sbe_fail, t.wear_aggregate_sbe_warn
        if sbe > fail:
            f.problem(
                Status.FAIL,
                f"{sbe} corrected memory errors in its lifetime, above {fail} (Azure NHC): "
                "the memory is failing, RMA or return it",
                observed=sbe,
                limit=fail,
                unit="lifetime SBE",
                action="rma",
            )
        elif sbe >= warn:
            f.problem(
                Status.WARN,
                f"{sbe} corrected memory errors in its lifetime (warning at {warn}): heavy past "
                "use; burn it in fully and watch it in the nightly sweep",
                observed=sbe,
                limit=warn,
                unit="lifetime SBE",
                action="retest",
            )
    if isinstance(sbe, int) or isinstance(dbe, int):
        f.ok(
            f"lifetime ECC: {sbe if sbe is not None else 'n/a'} corrected, "
            f"{dbe if dbe is not None else 'n/a'} uncorrectable"
        )
    else:
        f.gap("lifetime ECC counters not reported (no ECC or no InfoROM)")
    pages = [inv.get("retired_pages_sbe"), inv.get("retired_pages_dbe")]
    if any(isinstance(p, int) for p in pages):
        total = sum(p for p in pages if isinstance(p, int))
        warn = ctx.limits(WearThresholds).retired_pages_warn
        if total > warn:
            f.problem(
                Status.WARN,
                f"{total} memory pages retired (warning above {warn}, Meta GCM): worn memory",
                observed=total,
                limit=warn,
                unit="pages",
                action="retest",
            )
        else:
            f.ok(f"{total} retired pages")
    remaps = [inv.get("remapped_rows_correctable"), inv.get("remapped_rows_uncorrectable")]
    if any(isinstance(r, int) for r in remaps):
        total = sum(r for r in remaps if isinstance(r, int))
        if total:
            f.problem(
                Status.WARN,
                f"{total} memory rows remapped to spares: a record of past memory errors",
                observed=total,
                limit=0,
                unit="rows",
                action="retest",
            )
        else:
            f.ok("no remapped rows")
    _perf_per_watt(f, gpu, ctx)
    if miners := mining_software(inv.get("processes")):
        more = ", ..." if len(miners) > _MAX_NAMES_SHOWN else ""
        shown = ", ".join(miners[:_MAX_NAMES_SHOWN]) + more
        f.problem(
            Status.WARN,
            f"mining software in the card's process list ({shown}): it has mined, "
            "typically around the clock for months, which wears fans, thermal pads and memory; "
            "burn it in fully, inspect the cooler and price it as used",
            observed=len(miners),
            limit=0,
            unit="processes",
            action="retest",
        )
    yield f.verdict()


def tflops_per_w(gpu: GpuData) -> float | None:
    """Matmul TFLOP/s per watt drawn while matmul ran (median power), for a full run only."""
    tflops = gpu.metric("matmul_tflops")
    power = values(loaded_samples(gpu, "matmul"), "power_w")
    if tflops is None or not power or not full_load(gpu):
        return None
    median_w = statistics.median(power)
    return tflops / median_w if median_w > 0 else None


def _perf_per_watt(f: Findings, gpu: GpuData, ctx: CheckContext) -> None:
    """DESIGN.md's "degraded perf/W": the same work for more power than same-SKU peers."""

    def value_of(g: GpuData) -> float | None:
        return ctx.memo(("tflops_per_w", g.node, g.index), lambda: tflops_per_w(g))

    def key_of(g: GpuData) -> Any:
        result = last_result(g, "matmul") or {}
        return (peer_group(g), result.get("size"), result.get("dtype"))

    value = value_of(gpu)
    if value is None:
        return  # an inspect snapshot, a CPU device or a cut-short run: nothing to compare
    found = peer_finding(gpu, ctx, value_of, key_of, "perf/W", "TFLOP/s/W")
    if found.status in (Status.WARN, Status.FAIL):
        # Wear is evidence, never a FAIL on its own: throughput judges the speed itself.
        f.problem(
            Status.WARN,
            f"{found.text}: it needs more power than its peers for the same work, a sign of "
            "aged silicon or a degraded cooler (a hotter chip leaks more); re-test and price "
            "it as worn",
            observed=round(value, 4),
            limit=None if found.limit is None else round(found.limit, 4),
            unit="TFLOP/s/W",
            action="retest",
        )
    elif found.status == Status.PASS:
        f.ok(found.text)


# Executable names of the common GPU miners, as their projects publish them (ethminer,
# PhoenixMiner, T-Rex, NBMiner, lolMiner, GMiner, NanoMiner, TeamRedMiner, Claymore's
# EthDcrMiner64, NiceHash Excavator, XMRig, miniZ, Bminer, SRBMiner, ccminer): a dump that shows
# one running is a mining rig's. Matched on the file name, case-insensitively.
_MINERS = ("miner", "t-rex", "xmrig", "excavator", "miniz")
_MAX_NAMES_SHOWN = 3


def mining_software(processes: object) -> list[str]:
    """The mining programs among ``processes`` (paths or names from NVML or a dump)."""
    if not isinstance(processes, list | tuple):
        return []
    names = {str(p).replace("\\", "/").rsplit("/", 1)[-1] for p in processes if p}
    return sorted(n for n in names if any(m in n.lower() for m in _MINERS))


@check("ecc", needs=("inventory",), cpu=False, thresholds=EccThresholds)
def ecc(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Volatile and lifetime ECC counts and their growth during the run."""
    if is_cpu(gpu):
        return
    inv, f = gpu.inventory, Findings("ecc")
    sku = card_sku(inv)
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


@check("retired-pages", needs=("inventory",), cpu=False, thresholds=RetiredPagesThresholds)
def retired_pages(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Retired memory pages and pending retirement (pre-Ampere cards)."""
    if is_cpu(gpu):
        return
    inv, f = gpu.inventory, Findings("retired-pages")
    sbe, dbe = inv.get("retired_pages_sbe"), inv.get("retired_pages_dbe")
    pending = inv.get("retired_pages_pending")
    if not isinstance(sbe, int) and not isinstance(dbe, int) and pending is None:
        f.gap("page retirement not reported (Ampere and later remap rows instead)")
        yield f.verdict()
        return
    total = (sbe or 0) + (dbe or 0)
    t = ctx.limits(RetiredPagesThresholds)
    fail, dbe_warn, warn = t.retired_pages_fail, t.retired_pages_dbe_warn, t.retired_pages_warn
    if total >= fail:
        f.problem(
            Status.FAIL,
            f"{total} pages retired, at or above DCGM's limit of {fail}: the retirement table is "
            "(nearly) full, RMA the card",
            observed=total,
            limit=fail,
            unit="pages",
            action="rma",
        )
    if pending:
        f.problem(
            Status.WARN,
            "a page retirement is pending: memory failed recently; reboot (or reload the "
            "driver) to retire it, then re-test",
            observed="pending",
            action="retest",
        )
    if isinstance(dbe, int) and dbe > dbe_warn:
        f.problem(
            Status.WARN,
            f"{dbe} pages retired for uncorrectable errors (DCGM soft limit {dbe_warn})",
            observed=dbe,
            limit=dbe_warn,
            unit="pages",
            action="retest",
        )
    elif total > warn:
        f.problem(
            Status.WARN,
            f"{total} retired pages (warning above {warn}, Meta GCM)",
            observed=total,
            limit=warn,
            unit="pages",
            action="retest",
        )
    f.ok(f"{total} retired pages, none pending", observed=total, limit=fail, unit="pages")
    yield f.verdict()


@check("row-remap", needs=("inventory",), cpu=False, thresholds=RowRemapThresholds)
def row_remap(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Remapped rows, pending remap, remap failure (Ampere and later)."""
    if is_cpu(gpu):
        return
    inv, f = gpu.inventory, Findings("row-remap")
    corr, unc = inv.get("remapped_rows_correctable"), inv.get("remapped_rows_uncorrectable")
    pending, failure = inv.get("remapped_rows_pending"), inv.get("remapped_rows_failure")
    if not any(isinstance(v, int | bool) for v in (corr, unc, pending, failure)):
        f.gap("row remapping not reported (pre-Ampere cards retire pages instead)")
        yield f.verdict()
        return
    unc_fail = ctx.limits(RowRemapThresholds).remap_uncorrectable_fail
    if failure:
        f.problem(
            Status.FAIL,
            "a row remap failed: the memory has run out of spare rows where it needs them "
            "(NVIDIA's RMA criterion), RMA the card",
            observed="failure",
            action="rma",
        )
    if isinstance(unc, int) and unc >= unc_fail:
        f.problem(
            Status.FAIL,
            f"{unc} rows remapped for uncorrectable errors, at DCGM's limit of {unc_fail}: RMA",
            observed=unc,
            limit=unc_fail,
            unit="rows",
            action="rma",
        )
    if pending:
        f.problem(
            Status.WARN,
            "a row remap is pending: an uncorrectable error happened recently; reset the GPU "
            "(or reboot) to apply it, then re-test",
            observed="pending",
            action="retest",
        )
    remapped = (corr or 0) + (unc or 0)
    if remapped and not (isinstance(unc, int) and unc >= unc_fail):
        f.problem(
            Status.WARN,
            f"{remapped} rows remapped ({corr or 0} after correctable, {unc or 0} after "
            "uncorrectable errors): the memory has failed before; re-test and watch for more",
            observed=remapped,
            limit=0,
            unit="rows",
            action="retest",
        )
    # nvml.h: the histogram's ``none`` bucket counts banks with no reserved rows left
    # (nvml.md §2.11). No public numeric threshold exists (nvml.md §3.1, "UNVERIFIED"); Meta's GCM
    # alerts from the same histogram. One such bank is a WARN, never a FAIL on its own: the
    # card still works until an uncorrectable error lands in that bank.
    none_left = inv.get("remap_banks_none")
    if isinstance(none_left, int) and none_left > 0:
        f.problem(
            Status.WARN,
            f"{none_left} memory banks have no spare rows left: the next uncorrectable error "
            "there cannot be remapped",
            observed=none_left,
            limit=0,
            unit="banks",
            action="retest",
        )
    f.ok("no remapped rows, none pending, no remap failure", observed=remapped, unit="rows")
    yield f.verdict()
