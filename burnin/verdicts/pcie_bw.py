"""``pcie-bw``: host<->device bandwidth against the link's theoretical rate and against peers.

The slower of pinned host-to-device and device-to-host GB/s is judged against the theoretical
rate of the link the card reports (generation × width, PCI-SIG line rates and encodings) and
against peers. On the CPU fallback there is no link: the kernel copies host memory to host
memory, and the check SKIPs with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from burnin.skus import resolve
from burnin.verdicts.finding import Finding, fold, fraction_finding
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.peers import PeerThresholds, peer_finding, peer_group
from burnin.verdicts.records import last_result
from burnin.verdicts.registry import check

# Usable GB/s per lane after line encoding (PCI-SIG base specifications): Gen1/2 use 8b/10b at
# 2.5/5 GT/s, Gen3-5 128b/130b at 8/16/32 GT/s, Gen6 64 GT/s PAM4 with 242/256 FLIT efficiency.
LANE_GBPS = {1: 0.25, 2: 0.5, 3: 8 * 128 / 130 / 8, 4: 16 * 128 / 130 / 8, 5: 32 * 128 / 130 / 8}
LANE_GBPS[6] = 64 * 242 / 256 / 8


@dataclass(frozen=True, kw_only=True)
class PcieBwThresholds(PeerThresholds):
    pcie_warn_link_fraction: float = limit(
        0.75,
        unit="fraction of the link's theoretical rate",
        source="Azure NHC check_gpu_bw fails under 24 GB/s on Gen4 x16 (31.5) and 48 GB/s on "
        "Gen5 x16 (63), both ≈ 0.76",
        hi=1,
    )
    pcie_fail_link_fraction: float = limit(
        0.5,
        unit="fraction of the link's theoretical rate",
        source="what a link trained one generation down or at half width delivers",
        hi=1,
    )


def link_gbps(gen: int, width: int) -> float | None:
    """Theoretical one-direction GB/s of a PCIe link, or None for an unknown generation."""
    lane = LANE_GBPS.get(gen)
    return lane * width if lane and width > 0 else None


@check("pcie-bw", thresholds=PcieBwThresholds)
def pcie_bw(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Host<->device bandwidth vs the link's theoretical rate and vs peers."""
    result = last_result(gpu, "pcie")
    if result is None:
        return
    h2d, d2h = gpu.metric("pcie_h2d_gbps"), gpu.metric("pcie_d2h_gbps")
    if h2d is None or d2h is None:
        return
    slower = min(h2d, d2h)
    if result.get("link") == "host-only":
        text = (
            "no PCIe link on the CPU fallback: the kernel copied host memory to host memory "
            f"({h2d:.3g} GB/s one way, {d2h:.3g} GB/s back)"
        )
        yield fold(
            "pcie-bw",
            [Finding(Status.SKIP, text)],
            observed=round(slower, 3),
            unit="GB/s",
            every=True,
        )
        return
    findings = [_link_finding(gpu, slower, ctx.limits(PcieBwThresholds))]

    def key_of(g: GpuData) -> object:
        return (peer_group(g), (last_result(g, "pcie") or {}).get("size_mib"))

    def value_of(g: GpuData) -> float | None:
        up, down = g.metric("pcie_h2d_gbps"), g.metric("pcie_d2h_gbps")
        return None if up is None or down is None else min(up, down)

    findings.append(peer_finding(gpu, ctx, value_of, key_of, "pcie", "GB/s", "reseat"))
    yield fold("pcie-bw", findings, observed=round(slower, 3), unit="GB/s", every=True)


def _link_finding(gpu: GpuData, slower: float, t: PcieBwThresholds) -> Finding:
    inv = gpu.inventory
    sku = resolve(gpu.inventory, named=True)
    gen, width = inv.get("pcie_max_gen"), inv.get("pcie_max_width")
    source = "the card's maximum link"
    # A Gen5 card in a Gen4 slot can only carry Gen4: judge against what both support
    # (pcie-link reports the slot itself), or a healthy card in an older server would FAIL.
    slot_gen, slot_width = inv.get("pcie_system_max_gen"), inv.get("pcie_system_max_width")
    if isinstance(gen, int) and isinstance(slot_gen, int) and slot_gen < gen:
        gen, source = slot_gen, "the link card and slot both support"
    if isinstance(width, int) and isinstance(slot_width, int) and slot_width < width:
        width, source = slot_width, "the link card and slot both support"
    if not (isinstance(gen, int) and isinstance(width, int)) and sku is not None:
        gen, width, source = sku.pcie_gen, sku.pcie_width, f"the {sku.key} datasheet link"
    rate = link_gbps(gen, width) if isinstance(gen, int) and isinstance(width, int) else None
    if rate is None:
        return Finding(Status.SKIP, "link: the card reports no PCIe generation and width")
    finding = fraction_finding(
        "pcie (slower direction)",
        slower,
        rate,
        f"{source} Gen{gen} x{width}",
        t.pcie_warn_link_fraction,
        t.pcie_fail_link_fraction,
        "GB/s",
        "reseat",
    )
    now = _link_under_load(gpu)
    if now and now != (gen, width) and finding.status != Status.PASS:
        text = f"{finding.text}; the link ran at Gen{now[0]} x{now[1]} under load"
        return Finding(finding.status, text, finding.limit, finding.action)
    return finding


def _link_under_load(gpu: GpuData) -> tuple[int, int] | None:
    """The widest link seen in telemetry (idle links downtrain, so the best sample counts)."""
    seen = [
        (s["pcie_gen"], s["pcie_width"])
        for s in gpu.samples
        if isinstance(s.get("pcie_gen"), int) and isinstance(s.get("pcie_width"), int)
    ]
    return max(seen) if seen else None
