"""``membw``: device memory bandwidth against the SKU's datasheet peak and against peers.

The best of copy and triad GB/s; memtest's and the copies' wrong bits are ``sdc`` findings.
On the CPU fallback there is no datasheet: that comparison SKIPs with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from burnin.skus import resolve
from burnin.verdicts.finding import Finding, fold, fraction_finding
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.peers import PeerThresholds, peer_finding, peer_group
from burnin.verdicts.records import last_result, no_sku_reason
from burnin.verdicts.registry import check


@dataclass(frozen=True, kw_only=True)
class MembwThresholds(PeerThresholds):
    membw_fail_peak_fraction: float = limit(
        0.57,
        unit="fraction of the datasheet peak",
        source="DCGM diag's H100 SXM minimum (1,905,000 MB/s = 0.75 × measured) over its "
        "3,350 GB/s peak; the 0.75 rule on the lowest typical achieved share (0.76) agrees",
        hi=1,
    )
    membw_warn_peak_fraction: float = limit(
        0.65,
        unit="fraction of the datasheet peak",
        source="≈ 0.85 × the lowest typical achieved share, 0.76 (H100 SXM)",
        hi=1,
    )


@check("membw", thresholds=MembwThresholds)
def membw(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Device memory bandwidth vs the SKU's datasheet peak and vs peers."""
    result = last_result(gpu, "membw")
    gbps = gpu.metric("membw_gbps")
    if result is None or gbps is None:
        return
    t = ctx.limits(MembwThresholds)
    findings: list[Finding] = []
    sku = resolve(gpu.inventory, named=True)
    if sku is None:
        findings.append(Finding(Status.SKIP, f"datasheet: {no_sku_reason(gpu)}"))
    else:
        findings.append(
            fraction_finding(
                "membw",
                gbps,
                sku.peak_membw_gbps,
                f"the {sku.key} datasheet peak",
                t.membw_warn_peak_fraction,
                t.membw_fail_peak_fraction,
                "GB/s",
                "rma",
            )
        )

    def key_of(g: GpuData) -> object:
        return (peer_group(g), (last_result(g, "membw") or {}).get("size_mib"))

    findings.append(
        peer_finding(gpu, ctx, lambda g: g.metric("membw_gbps"), key_of, "membw", "GB/s", "rma")
    )
    yield fold("membw", findings, observed=round(gbps, 3), unit="GB/s", every=True)
