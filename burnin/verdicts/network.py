"""Network checks: all-reduce correctness and bus bandwidth (``allreduce``), and the GPU or pair
that pairwise all-reduce isolates as slow (``slow-link``).

The all-reduce kernel's inputs make the exact sum known, so one wrong element fails the card
(nccl-tests' ``#wrong`` with 0 ULP tolerance). The node's bus bandwidth is judged against a
configured floor only on cards of a known SKU, so a profile's GPU floor never judges the CPU
fallback. A slow GPU drags down every pair it belongs to, so each device is scored by its best
pair and compared with the typical pair (the median of those scores): a device whose best pair
is slow is the culprit; a slow pair between two devices that are fast elsewhere is a slow link.
Every device carries the node's whole pair table, so any one record is enough to judge.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from burnin.kernels.collectives import typical_pair_gbps
from burnin.skus import resolve
from burnin.verdicts.finding import Finding, fold
from burnin.verdicts.lifecycle import first_failed_peers
from burnin.verdicts.limits import limit
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict, is_cpu
from burnin.verdicts.registry import check

Pair = tuple[int, int]
# nccl-tests' tolerance on its bandwidth floor: "Avg bus bandwidth" FAILs below 0.9 × the
# floor (src/common.cu, docs/tools.md); burnin WARNs below the floor, FAILs below this.
FLOOR_FAIL_SHARE = 0.9
# Events (events.jsonl) of a peer that explain why a collective it was part of broke off.
_PEER_FAILURES = {"hang", "crash", "lost", "killed"}


@dataclass(frozen=True, kw_only=True)
class AllreduceThresholds:
    min_allreduce_busbw_gbps: float = limit(
        0.0,
        unit="GB/s",
        source="0 = off; judged on cards of a known SKU only, WARN below it, FAIL below 0.9 × "
        "it (nccl-tests); Azure NHC check_nccl_allreduce uses 460 for 8× H100 SXM at 16 GiB "
        "(nd96isr_h100_v5.conf), 431 for H200 (nd96isr_h200_v5.conf)",
        hi=1e6,
    )


@dataclass(frozen=True, kw_only=True)
class SlowLinkThresholds:
    slow_link_warn_ratio: float = limit(
        0.9,
        unit="fraction of the typical pair's busbw",
        source="nccl-tests' 0.9 × floor tolerance (src/common.cu)",
        hi=1,
    )
    slow_link_fail_ratio: float = limit(
        0.75,
        unit="fraction of the typical pair's busbw",
        source="DCGM diag's '0.75 × measured' minimum (diag-skus.yaml.in), the typical pair as "
        "the measured value",
        hi=1,
    )


def last_allreduce(gpu: GpuData) -> dict[str, Any] | None:
    """The device's last all-reduce result record, if any."""
    results = gpu.results("allreduce")
    return results[-1] if results else None


def pair_table(gpus: list[GpuData], node: str) -> dict[Pair, dict[str, Any]]:
    """The node's pairwise table {(a, b): row}, from the first device record that has one."""
    for gpu in gpus:
        result = last_allreduce(gpu) if gpu.node == node else None
        if result and result.get("pairs"):
            return {(int(p["devices"][0]), int(p["devices"][1])): p for p in result["pairs"]}
    return {}


@dataclass(frozen=True)
class LinkFindings:
    """What the pair table says: the typical pair, each device's best, and who is slow."""

    typical_gbps: float
    best_gbps: dict[int, float]
    culprits: dict[int, float]  # device -> its best pair / typical pair
    slow_pairs: dict[Pair, float]  # slow pairs with no culprit in them -> busbw / typical


def isolate(busbw: Mapping[Pair, float], warn_ratio: float) -> LinkFindings:
    """Name the slow GPUs and slow links of one node's pairwise busbw table (pure).

    Args:
        busbw: busbw in GB/s per device pair.
        warn_ratio: a device or pair below this share of the typical pair is slow.

    Returns:
        The findings; with fewer than 3 devices nothing can be isolated and nothing is named.
    """
    best: dict[int, float] = {}
    for pair, value in busbw.items():
        for device in pair:
            best[device] = max(best.get(device, 0.0), value)
    typical = typical_pair_gbps(busbw)
    if len(best) < 3 or typical <= 0:
        return LinkFindings(typical, best, {}, {})
    culprits = {d: b / typical for d, b in best.items() if b < warn_ratio * typical}
    slow_pairs = {
        p: v / typical
        for p, v in busbw.items()
        if v < warn_ratio * typical and not set(p) & culprits.keys()
    }
    return LinkFindings(typical, best, culprits, slow_pairs)


@check("allreduce", thresholds=AllreduceThresholds)
def allreduce(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """All-reduce correctness (exact sums) and node bus bandwidth vs a floor."""
    result = last_allreduce(gpu)
    if result is None:
        return  # not planned, or no result: the lifecycle checks make that an ERROR
    if result.get("skipped"):
        yield Verdict(check="allreduce", status=Status.SKIP, message=str(result["skipped"]))
        return
    n = int(result.get("world_size") or 0)
    missing = result.get("missing") or []
    absent = f"; gpu {', '.join(map(str, missing))} did not join" if missing else ""
    wrong = int(result.get("wrong") or 0)
    if wrong:
        yield _wrong_verdict(gpu, ctx, result, wrong)
        return
    if result.get("error"):
        yield _error_verdict(gpu, ctx, result, absent)
        return
    metrics = result.get("metrics", {})
    busbw = metrics.get("allreduce_busbw_gbps")
    if busbw is None:
        yield Verdict(check="allreduce", status=Status.SKIP, message="no size was measured")
        return
    sizes = result.get("sizes") or []
    largest = sizes[-1]["size_bytes"] if sizes else 0
    exact = Finding(
        Status.PASS,
        f"{result.get('verifications', 0)} verified all-reduce(s) over {n} devices, every "
        f"element exact; busbw {busbw:.3g} GB/s at {_bytes(largest)} (avg "
        f"{metrics.get('allreduce_avg_busbw_gbps', busbw):.3g} GB/s over {len(sizes)} sizes)"
        f"{absent}",
    )
    yield fold(
        "allreduce",
        [exact, _floor(gpu, ctx, busbw)],
        observed=round(busbw, 3),
        unit="GB/s",
        every=True,
    )


def _error_verdict(gpu: GpuData, ctx: CheckContext, result: dict[str, Any], absent: str) -> Verdict:
    """ERROR, unless a member of the group failed: then the hang or crash is that peer's.

    The peer named is the one that stopped answering first (a hang counts from its last
    progress), else the peers this rank saw make no progress while it waited, else any member
    with a failure record.
    """
    members = set(result.get("members") or [])
    group = [g for g in ctx.fleet if g.node == gpu.node and g.index in members]
    failed = [d for d in first_failed_peers(gpu, group, None) if d in members]
    failed = failed or sorted(int(d) for d in result.get("stalled") or [] if d in members)
    failed = failed or sorted(
        g.index
        for g in group
        if g.index != gpu.index
        and (any(e.get("kind") in _PEER_FAILURES for e in g.events) or g.of_type("error"))
    )
    if failed:
        names = ", ".join(f"gpu{d}" for d in failed)
        return Verdict(
            check="allreduce",
            status=Status.SKIP,
            action="retest",
            message=f"peer {names} stopped answering during the all-reduce (its own verdicts "
            f"say why), so this GPU's all-reduce did not complete and is not judged: re-test "
            f"it once {names} is fixed ({result['error']})",
        )
    return Verdict(
        check="allreduce",
        status=Status.ERROR,
        action="retest",
        message=f"the all-reduce over the node did not complete: {result['error']}{absent}",
    )


def _floor(gpu: GpuData, ctx: CheckContext, busbw: float) -> Finding:
    floor = ctx.limits(AllreduceThresholds).min_allreduce_busbw_gbps
    if not floor:
        return Finding(Status.SKIP, "no busbw floor configured")
    if resolve(gpu.inventory, named=True) is None:
        return Finding(Status.SKIP, f"busbw floor {floor:g} GB/s not applied: SKU unknown")
    if busbw < FLOOR_FAIL_SHARE * floor:
        status = Status.FAIL
    elif busbw < floor:
        status = Status.WARN
    else:
        return Finding(Status.PASS, f"at least the floor of {floor:g} GB/s", floor)
    return Finding(
        status,
        f"node busbw {busbw:.3g} GB/s is below the floor of {floor:g} GB/s; the slow-link "
        "verdicts name the GPU or link that slows the node, if one does",
        floor,
        "retest",
    )


def _wrong_verdict(gpu: GpuData, ctx: CheckContext, result: dict[str, Any], wrong: int) -> Verdict:
    members = set(result.get("members") or []) - {gpu.index}
    peers = [last_allreduce(g) for g in ctx.fleet if g.node == gpu.node and g.index in members]
    # A card that corrupts what it sends spoils every rank's sum; one that corrupts what it
    # receives or holds spoils its own. Only when every rank saw wrong sums is blame unclear.
    everyone = bool(peers) and all(int((r or {}).get("wrong") or 0) for r in peers)
    rows = [s for s in (result.get("sizes") or []) if s.get("wrong")]
    rows += [p for p in (result.get("pairs") or []) if p.get("wrong")]
    where = ", ".join(
        f"{_bytes(r['size_bytes'])}"
        + (f" (pair gpu{r['devices'][0]}-gpu{r['devices'][1]})" if "devices" in r else "")
        + f": {r['wrong']}"
        for r in rows[:4]
    )
    first = next((r["locations"][0] for r in rows if r.get("locations")), None)
    sample = (
        f"; first at element {first['index']}: got {first['got']:g}, expected {first['expected']:g}"
        if first
        else ""
    )
    if everyone:
        blame = (
            "every GPU of the group saw wrong sums, so the sender or a link is at fault: re-test"
        )
    else:
        blame = "not every GPU of the group saw wrong sums, so this one corrupts what it holds"
    return Verdict(
        check="allreduce",
        status=Status.FAIL,
        observed=wrong,
        limit=0,
        unit="wrong elements",
        action="retest" if everyone else "rma",
        message=f"all-reduce returned {wrong} wrong element(s) in "
        f"{result.get('failed_verifications', 0)} of {result.get('verifications', 0)} "
        f"verifications ({where or 'stress phase'}){sample}; {blame}",
    )


@check("slow-link", thresholds=SlowLinkThresholds)
def slow_link(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """The GPU or GPU pair that pairwise all-reduce isolates as slow."""
    result = last_allreduce(gpu)
    if result is None:
        return
    table = pair_table([gpu, *ctx.fleet], gpu.node)
    if result.get("skipped") or not table:
        why = result.get("skipped") or result.get("error")
        if not why and _world(result) < 3:
            why = f"isolating a slow GPU needs 3 devices or more, the group had {_world(result)}"
        why = why or "pairwise all-reduce was off (kernels.allreduce.pairwise)"
        yield Verdict(check="slow-link", status=Status.SKIP, message=f"no pairwise table: {why}")
        return
    busbw = {p: float(row.get("busbw_gbps") or 0.0) for p, row in table.items()}
    t = ctx.limits(SlowLinkThresholds)
    found = isolate(busbw, t.slow_link_warn_ratio)
    me = gpu.index
    skip = None
    if me not in found.best_gbps:
        skip = "this device is not in the node's pairwise table"
    elif len(found.best_gbps) < 3:
        skip = "isolating a slow GPU needs 3 devices or more: 2 make one pair, nothing to compare"
    elif is_cpu(gpu):
        skip = (
            f"CPU fallback: logical devices share cores, so pair timings measure the scheduler "
            f"(best pair {found.best_gbps[me]:.3g} GB/s, typical {found.typical_gbps:.3g} GB/s)"
        )
    if skip:
        yield Verdict(check="slow-link", status=Status.SKIP, message=skip)
        return
    yield _link_verdict(me, busbw, found, t.slow_link_fail_ratio)


def _world(result: dict[str, Any]) -> int:
    return int(result.get("world_size") or 0)


def _link_verdict(
    me: int, busbw: Mapping[Pair, float], found: LinkFindings, fail_ratio: float
) -> Verdict:
    typical = found.typical_gbps
    mine = {(b if a == me else a): v for (a, b), v in busbw.items() if me in (a, b)}
    listing = ", ".join(f"gpu{peer} {v:.3g}" for peer, v in sorted(mine.items()))
    flagged = functools.partial(Verdict, check="slow-link", unit="GB/s", action="reseat")
    if me in found.culprits:
        ratio = found.culprits[me]
        return flagged(
            status=Status.FAIL if ratio < fail_ratio else Status.WARN,
            observed=round(found.best_gbps[me], 3),
            message=f"every pair with gpu{me} is slow: its best pair reaches "
            f"{found.best_gbps[me]:.3g} GB/s, {ratio:.0%} of the typical pair's {typical:.3g} "
            f"GB/s (pairs: {listing}); this GPU's links (NVLink, PCIe slot or riser) are "
            "degraded: reseat it and re-test",
        )
    my_slow = {p: r for p, r in found.slow_pairs.items() if me in p}
    if my_slow:
        (a, b), ratio = min(my_slow.items(), key=lambda item: item[1])
        return flagged(
            status=Status.FAIL if ratio < fail_ratio else Status.WARN,
            observed=round(busbw[(a, b)], 3),
            message=f"the link between gpu{a} and gpu{b} is slow: {busbw[(a, b)]:.3g} GB/s, "
            f"{ratio:.0%} of the typical pair's {typical:.3g} GB/s, while both GPUs are fast "
            "with their other peers; inspect that link (bridge, switch, cabling), reseat, "
            "re-test",
        )
    culprits = sorted(set(found.culprits) & set(mine))
    note = f"; slow only with gpu{', gpu'.join(map(str, culprits))}" if culprits else ""
    return Verdict(
        check="slow-link",
        status=Status.PASS,
        observed=round(found.best_gbps[me], 3),
        unit="GB/s",
        message=f"pairwise busbw: best pair {found.best_gbps[me]:.3g} GB/s, typical pair "
        f"{typical:.3g} GB/s over {len(found.best_gbps)} devices{note}",
    )


def _bytes(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"
