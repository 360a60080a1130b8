"""``wear``: evidence of a previous owner's heavy use.

A card's memory keeps its history in the InfoROM: lifetime (aggregate) ECC counts, retired pages
(Kepler to Volta) and remapped rows (Ampere and later). ``wear`` reads that history, mining
software in a dump's process list and, after a run, matmul TFLOP/s per watt against same-SKU
peers ("degraded perf/W"). It is evidence, so it WARNs (and FAILs only where the ``ecc`` line
is crossed); ``ecc``, ``retired-pages`` and ``row-remap`` judge each mechanism itself. It reads
the inventory, so ``burnin inspect`` judges a seller's dump with it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from burnin.verdicts.ecc import EccThresholds
from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit, same_as
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.peers import PeerThresholds, peer_finding, peer_group
from burnin.verdicts.records import (
    full_load,
    last_result,
    loaded_samples,
    values,
)
from burnin.verdicts.registry import check
from burnin.verdicts.retired_pages import RetiredPagesThresholds, gcm


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
                f"{total} memory pages retired (warning above {warn}{gcm(warn)}): worn memory",
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
    """docs/contracts.md's "degraded perf/W": the same work for more power than same-SKU peers."""

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
