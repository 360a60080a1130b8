"""``row-remap``: remapped rows, pending remap and remap failure (Ampere and later).

A failed remap or the remapper's capacity of uncorrectable remaps is an RMA (NVIDIA's RMA
criterion, DCGM); a pending remap needs a reset and a re-test; banks without spare rows warn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.registry import check


@dataclass(frozen=True, kw_only=True)
class RowRemapThresholds:
    remap_uncorrectable_fail: int = limit(
        512,
        unit="rows",
        source="DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE and Azure NHC: 512, the remapper's capacity",
        hi=1e6,
    )


@check("row-remap", needs=("inventory",), cpu=False, thresholds=RowRemapThresholds)
def row_remap(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Remapped rows, pending remap, remap failure (Ampere and later)."""
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
    # (docs/nvml.md §2.11). No public numeric threshold exists (docs/nvml.md §3.1,
    # "UNVERIFIED"); Meta's GCM
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
