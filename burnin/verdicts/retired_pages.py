"""``retired-pages``: retired memory pages and pending retirement (Kepler to Volta).

A full retirement table is an RMA (DCGM's limit), a pending retirement needs a reboot and a
re-test, and many retired pages warn (DCGM soft limit, Meta GCM).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.registry import check


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


@check("retired-pages", needs=("inventory",), cpu=False, thresholds=RetiredPagesThresholds)
def retired_pages(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Retired memory pages and pending retirement (pre-Ampere cards)."""
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
            f"{total} retired pages (warning above {warn}{gcm(warn)})",
            observed=total,
            limit=warn,
            unit="pages",
            action="retest",
        )
    f.ok(f"{total} retired pages, none pending", observed=total, limit=fail, unit="pages")
    yield f.verdict()


def gcm(warn: int) -> str:
    """Cite Meta GCM only for its own line (> 10 pages); a profile may set a stricter one."""
    return ", Meta GCM" if warn == RetiredPagesThresholds().retired_pages_warn else ""
