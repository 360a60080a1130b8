"""``nvlink``: NVLink links down against the SKU's count, and link error counters under load.

The SKU's link count (``nvlink_links`` in burnin/data/skus.toml) is what NVML should report
up; where the SKU does not fix it (a bridged PCIe card) the links NVML reports a state for are
the reference. Error counters (CRC, replay, recovery, summed over links by NVML) are judged by
DCGM's NVLink health rules: any CRC error is a warning and 100 or more per second a failure;
any replay or recovery error is a failure. A card without NVLink is SKIP with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from burnin.skus import resolve
from burnin.verdicts.finding import Findings
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.records import loaded_in_run, values
from burnin.verdicts.registry import check

_DCGM = "DCGM health watch NVLink rules (DcgmHealthWatch.cpp MonitorNVLink4Fields)"


@dataclass(frozen=True, kw_only=True)
class NvlinkThresholds:
    nvlink_crc_warn: float = limit(
        1,
        unit="errors",
        source=f"{_DCGM}: any CRC flit or data error in the window is a warning",
        hi=1e12,
    )
    nvlink_crc_fail_per_s: float = limit(
        100.0,
        unit="errors/s",
        source=f"{_DCGM}: CRC errors only matter at rates of 100 or more per second "
        "(DcgmGPUHardwareLimits.h)",
        hi=1e12,
    )
    nvlink_replay_fail: float = limit(
        1, unit="errors", source=f"{_DCGM}: any replay error is a failure", hi=1e12
    )
    nvlink_recovery_fail: float = limit(
        1, unit="errors", source=f"{_DCGM}: any recovery error is a failure", hi=1e12
    )


@check("nvlink", needs=("inventory",), cpu=False, thresholds=NvlinkThresholds)
def nvlink(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """NVLink links down against the SKU's count; CRC, replay, recovery errors under load."""
    f = Findings("nvlink")
    inv = gpu.inventory
    sku = resolve(inv)
    total = _int(inv.get("nvlink_links_total"))
    ups = values([inv], "nvlink_links_up") + values(gpu.samples, "nvlink_links_up")
    expected = sku.nvlink_links if sku is not None else None
    if expected == 0 and not total and not any(ups):
        f.gap(f"no NVLink on {sku.key if sku else 'this card'} (a PCIe card without NVLink)")
        yield f.verdict()
        return
    if expected is None and not total and not ups:
        f.gap("no NVLink reported (a PCIe card without a bridge, or NVML reads no link state)")
        yield f.verdict()
        return
    _links(f, sku.key if sku and expected else None, expected or total, ups)
    _errors(f, loaded_in_run(gpu, ctx) or gpu.samples, ctx.limits(NvlinkThresholds))
    yield f.verdict()


def _links(f: Findings, sku_key: str | None, expected: int | None, ups: list[float]) -> None:
    if not expected:
        f.gap("the card's NVLink link count is unknown (no SKU count, NVML lists no links)")
        return
    if not ups:
        f.gap(f"NVML reported no NVLink link state ({expected} links expected)")
        return
    up = int(min(ups))
    whose = f"{sku_key} has {expected}" if sku_key else f"NVML lists {expected}"
    if up < expected:
        f.problem(
            Status.FAIL,
            f"{up} of {expected} NVLink links up ({whose}): a link is down; reseat the GPU on "
            "its baseboard and re-test, RMA the card if the link stays down",
            observed=up,
            limit=expected,
            unit="links",
            action="reseat",
        )
    else:
        f.ok(f"{up} of {expected} NVLink links up", observed=up, limit=expected, unit="links")


def _errors(f: Findings, samples: list[dict[str, Any]], t: NvlinkThresholds) -> None:
    crc, crc_s = _growth(samples, "nvlink_crc_errors")
    replay, _ = _growth(samples, "nvlink_replay_errors")
    recovery, _ = _growth(samples, "nvlink_recovery_errors")
    if crc is None and replay is None and recovery is None:
        f.gap("NVLink error counters not sampled (or fewer than two samples)")
        return
    for name, grew, fail_at in (
        ("replay", replay, t.nvlink_replay_fail),
        ("recovery", recovery, t.nvlink_recovery_fail),
    ):
        if grew is not None and grew >= fail_at:
            f.problem(
                Status.FAIL,
                f"{grew:g} NVLink {name} errors during the run (DCGM fails any): a marginal "
                "link; reseat the GPU and re-test, RMA if they return",
                observed=grew,
                limit=fail_at,
                unit="errors",
                action="reseat",
            )
    rate = crc / crc_s if crc is not None and crc_s else None
    if crc is not None and rate is not None and rate >= t.nvlink_crc_fail_per_s:
        f.problem(
            Status.FAIL,
            f"{rate:.3g} NVLink CRC errors per second (DCGM fails "
            f"{t.nvlink_crc_fail_per_s:g}/s and more): a bad link; reseat the GPU, RMA if they "
            "return",
            observed=round(rate, 3),
            limit=t.nvlink_crc_fail_per_s,
            unit="errors/s",
            action="reseat",
        )
    elif crc is not None and crc >= t.nvlink_crc_warn:
        f.problem(
            Status.WARN,
            f"{crc:g} NVLink CRC errors during the run (DCGM warns on any): watch the link, "
            "reseat if they keep growing",
            observed=crc,
            limit=t.nvlink_crc_warn,
            unit="errors",
            action="retest",
        )
    read = [n for n, v in (("CRC", crc), ("replay", replay), ("recovery", recovery)) if v == 0]
    if read:
        f.ok(f"no NVLink {', '.join(read)} errors under load", observed=0, unit="errors")


def _growth(samples: list[dict[str, Any]], key: str) -> tuple[float | None, float]:
    """(how much a cumulative counter grew, over how many seconds); a counter that went down
    was reset (a driver reload), so only the rises count."""
    points = sorted(
        (s["elapsed_s"], s[key])
        for s in samples
        if key in s and _number(s.get(key)) and _number(s.get("elapsed_s"))  # most lack key
    )
    if len(points) < 2:
        return None, 0.0
    grew = sum(max(0, b[1] - a[1]) for a, b in pairwise(points))
    return float(grew), float(points[-1][0] - points[0][0])


def _int(value: Any) -> int | None:
    return int(value) if _number(value) else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
