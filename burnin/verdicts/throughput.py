"""``throughput``: matmul TFLOP/s per dtype against the SKU's datasheet peak and against peers.

Each dtype's figure is a fraction of the same dtype's dense datasheet peak (WARN and FAIL lines
below) and a robust-z gap to same-SKU peers that ran the same matrix size; an optional absolute
floor applies to the main dtype. A card the thermal guard stopped is not judged on speed: its
thermal FAIL is the finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from burnin.skus import resolve
from burnin.verdicts.finding import Finding, fold, fraction_finding
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.peers import PeerThresholds, peer_finding, peer_group
from burnin.verdicts.records import (
    as_dict,
    guard_stop_s,
    guarded,
    heat_action,
    last_result,
    no_sku_reason,
)
from burnin.verdicts.registry import check


@dataclass(frozen=True, kw_only=True)
class ThroughputThresholds(PeerThresholds):
    min_matmul_tflops: float = limit(
        0.0, unit="TFLOP/s", source="an absolute floor a profile may set; 0 = off", hi=1e6
    )
    throughput_warn_peak_fraction: float = limit(
        0.5,
        unit="fraction of the datasheet peak",
        source="DCGM diag's 0.75 × measured on the ≈0.8 of peak an H100 SXM reaches on bf16 "
        "8192³ (790-800 of 989 TFLOP/s) gives 0.6, lowered to 0.5 for power-capped PCIe "
        "cards (A10, L4)",
        hi=1,
    )
    throughput_fail_peak_fraction: float = limit(
        0.375,
        unit="fraction of the datasheet peak",
        source="0.75 × the WARN line (DCGM diag's 0.75 × measured rule again)",
        hi=1,
    )
    throughput_min_size_for_peak: int = limit(
        4096,
        unit="matrix size m=n=k",
        source="smaller GEMMs cannot fill a datacenter GPU (DCGM and gpu-burn use 8192)",
        lo=1,
        hi=1 << 20,
    )


@check("throughput", thresholds=ThroughputThresholds)
def throughput(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Matmul TFLOP/s per dtype vs the SKU's datasheet peak and vs same-SKU peers."""
    tflops = gpu.metric("matmul_tflops")
    if tflops is None:
        return
    if (skip := guarded(gpu)) is not None:
        yield fold(
            "throughput",
            [Finding(Status.SKIP, skip)],
            observed=round(tflops, 3),
            unit="TFLOP/s",
            every=True,
        )
        return
    result = last_result(gpu, "matmul") or {}
    main = result.get("dtype")
    size = result.get("size")
    findings: list[Finding] = []
    floor = ctx.limits(ThroughputThresholds).min_matmul_tflops
    if floor:
        findings.append(
            fraction_finding(
                "matmul", tflops, floor, "the configured floor", 1.0, 1.0, "TFLOP/s", "retest"
            )
        )
    sku = resolve(gpu.inventory, named=True)
    if sku is None:
        findings.append(Finding(Status.SKIP, f"datasheet: {no_sku_reason(gpu)}"))
    dtypes: list[str | None] = list(as_dict(result.get("dtypes"))) or [main]
    for dtype in dtypes:
        label = dtype or "matmul"
        value = gpu.metric(f"matmul_{dtype}_tflops") if dtype else None
        value = tflops if value is None and dtype == main else value
        if value is None:
            continue
        if sku is not None:
            findings.append(_datasheet(gpu, ctx, sku, label, value, size))

        def value_of(g: GpuData, d: str | None = dtype) -> float | None:
            if guard_stop_s(g) is not None:
                return None  # a card cut short while it throttled is no one's yardstick
            if d == (last_result(g, "matmul") or {}).get("dtype"):
                return g.metric("matmul_tflops")
            return g.metric(f"matmul_{d}_tflops") if d else None

        def key_of(g: GpuData, d: str | None = dtype) -> Any:
            return (peer_group(g), (last_result(g, "matmul") or {}).get("size"), d)

        findings.append(
            peer_finding(gpu, ctx, value_of, key_of, label, "TFLOP/s", heat_action(gpu))
        )
    yield fold("throughput", findings, observed=round(tflops, 3), unit="TFLOP/s", every=True)


def _datasheet(
    gpu: GpuData, ctx: CheckContext, sku: Any, label: str, value: float, size: Any
) -> Finding:
    t = ctx.limits(ThroughputThresholds)
    min_size = t.throughput_min_size_for_peak
    peak = sku.peak_tflops_for(label)
    if peak is None:
        return Finding(Status.SKIP, f"{label}: no {sku.key} datasheet peak for this dtype")
    if isinstance(size, int) and size < min_size:
        return Finding(
            Status.SKIP, f"{label}: {size}³ is too small to compare with the datasheet peak"
        )
    return fraction_finding(
        label,
        value,
        peak,
        f"the {sku.key} datasheet peak",
        t.throughput_warn_peak_fraction,
        t.throughput_fail_peak_fraction,
        "TFLOP/s",
        heat_action(gpu),
    )
