"""``pcie-replay``: the PCIe replay counter's rate against DCGM's expected rate for the link."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import growth_per_min, loaded_in_run, values
from burnin.verdicts.registry import check

# PCIe lane rate by generation, GT/s (PCI-SIG specifications), for DCGM's replay-rate formula.
_LANE_GTPS = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}


@dataclass(frozen=True, kw_only=True)
class PcieReplayThresholds:
    pcie_replay_ber: float = limit(
        1e-12,
        unit="errors per bit",
        source="DCGM GetExpectedPcieReplayRate: ceil(BER × lane rate × 60 s × lanes) per "
        "minute, BER 1e-12 (x16: 8 Gen3, 16 Gen4, 31 Gen5)",
        hi=1,
    )


@check("pcie-replay", needs=("telemetry",), cpu=False, thresholds=PcieReplayThresholds)
def pcie_replay(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """PCIe replay counter rate vs DCGM's expected rate for the link."""
    f = Findings("pcie-replay")
    rate = growth_per_min(gpu, "pcie_replay_count")
    loaded = loaded_in_run(gpu, ctx) or gpu.samples
    gen = max(values(loaded, "pcie_gen"), default=None) or gpu.inventory.get("pcie_max_gen")
    width = max(values(loaded, "pcie_width"), default=None) or gpu.inventory.get("pcie_max_width")
    if rate is None:
        f.gap("PCIe replay counter not reported (or fewer than two samples)")
    elif (generation := int(gen or 0)) not in _LANE_GTPS or not width:
        f.gap("PCIe generation or width unknown: no replay limit")
    else:
        # DCGM GetExpectedPcieReplayRate: ceil(BER × lane rate × 60 s × lanes) per minute.
        ber = ctx.limits(PcieReplayThresholds).pcie_replay_ber
        allowed = math.ceil(ber * _LANE_GTPS[generation] * 1e9 * 60 * int(width))
        if rate > allowed:
            f.problem(
                Status.WARN,
                f"{rate:.3g} PCIe replays per minute, above DCGM's {allowed}/min for "
                f"Gen{generation} x{int(width)}: a marginal link (seat, riser, slot); reseat the "
                "card and re-test",
                observed=round(rate, 3),
                limit=allowed,
                unit="replays/min",
                action="reseat",
            )
        else:
            f.ok(
                f"{rate:.3g} PCIe replays per minute",
                observed=round(rate, 3),
                limit=allowed,
                unit="replays/min",
            )
    yield f.verdict()
