"""Rack checks: a multi-node run's cross-node all-reduce, its node pairs and its lost nodes.

They read ``rack.jsonl`` (written by the rank-0 node, burnin/rack.py) through the run: the
``rack-allreduce`` records give each node's first device an ``allreduce`` verdict (FAIL on any
wrong element, else PASS with the best busbw); the ``node-pair`` records give ``slow-link``
verdicts where a pair's busbw is below a share of the typical pair (the same isolation as a
node's GPU pairs, :func:`burnin.verdicts.network.isolate`: with 3 nodes or more, a node in
every slow pair is the suspect, a single slow pair is the link between two nodes); a
``rack-error`` is an ERROR on the nodes it names (``lost`` on every card of a node that never
finished). Registered as ``rack`` and needing only the inventory, so a lost node's cards,
which have no records, are judged too; a single-node run has no rack records and gets none.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.network import SlowLinkThresholds, isolate
from burnin.verdicts.registry import check

Pair = tuple[str, str]


def pair_busbw(rack: Sequence[Mapping[str, Any]]) -> dict[Pair, float]:
    """busbw (GB/s) of each node pair of ``rack.jsonl``."""
    out: dict[Pair, float] = {}
    for r in rack:
        if r.get("type") == "node-pair" and len(r.get("nodes") or ()) == 2:
            a, b = (str(n) for n in r["nodes"])
            out[(a, b)] = float(r.get("busbw_gbps") or 0.0)
    return out


def slow_pairs(busbw: Mapping[Pair, float], warn_ratio: float) -> tuple[list[Pair], list[str]]:
    """(slow pairs, suspect nodes): pairs below ``warn_ratio`` of the typical pair; a node
    whose best pair is slow is the suspect and its slow pairs are listed. Fewer than 3 nodes
    make nothing to compare."""
    names = sorted({n for pair in busbw for n in pair})
    index = {n: i for i, n in enumerate(names)}
    found = isolate({(index[a], index[b]): v for (a, b), v in busbw.items()}, warn_ratio)
    suspects = sorted(names[i] for i in found.culprits)
    slow = [
        (a, b)
        for (a, b), v in busbw.items()
        if v < warn_ratio * found.typical_gbps and (a in suspects or b in suspects)
    ]
    slow += [(names[a], names[b]) for a, b in found.slow_pairs]
    return sorted(slow), suspects


def median_of_others(busbw: Mapping[Pair, float], pair: Pair) -> float | None:
    others = [v for p, v in busbw.items() if p != pair]
    return statistics.median(others) if others else None


def _first_device(gpu: GpuData, ctx: CheckContext) -> bool:
    first = ctx.memo(
        ("rack-first", gpu.node),
        lambda: min((g.index for g in ctx.fleet if g.node == gpu.node), default=gpu.index),
    )
    return bool(gpu.index == first)


@check("rack", needs=("inventory",))
def rack(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """Cross-node all-reduce, slow node pairs and lost nodes of a multi-node run."""
    records = ctx.rack
    if not records:
        return
    for r in records:
        if r.get("type") == "rack-error" and r.get("node") == gpu.node:
            lost = bool(r.get("lost"))
            if lost or _first_device(gpu, ctx):
                yield Verdict(
                    check="lost" if lost else "allreduce",
                    status=Status.ERROR,
                    action="retest",
                    message=f"{'node lost' if lost else 'cross-node stage failed'}: "
                    f"{r.get('message')}",
                )
    if not _first_device(gpu, ctx):
        return
    yield from _allreduce(gpu, records)
    yield from _slow_link(gpu, ctx, records)


def _allreduce(gpu: GpuData, records: Sequence[Mapping[str, Any]]) -> Iterator[Verdict]:
    rows = [r for r in records if r.get("type") == "rack-allreduce"]
    pairs = [r for r in records if r.get("type") == "node-pair" and gpu.node in r["nodes"]]
    if not rows:
        return
    wrong = sum(int(r.get("wrong") or 0) for r in [*rows, *pairs])
    best = max(float(r.get("busbw_gbps") or 0.0) for r in rows)
    ranks, backend = rows[0].get("ranks"), rows[0].get("backend")
    # Every device of every node is a rank; records without a node count are one rank a node.
    span = f"{ranks} ranks on {rows[0]['nodes']} nodes" if "nodes" in rows[0] else f"{ranks} nodes"
    if wrong:
        yield Verdict(
            check="allreduce",
            status=Status.FAIL,
            observed=wrong,
            limit=0,
            unit="wrong elements",
            action="retest",
            message=f"cross-node all-reduce ({span}, {backend}) or a pair test with this "
            f"node returned {wrong} wrong element(s): a NIC, cable or switch corrupts data",
        )
        return
    yield Verdict(
        check="allreduce",
        status=Status.PASS,
        observed=round(best, 3),
        unit="GB/s",
        message=f"cross-node all-reduce over {span} ({backend}): every sum exact, "
        f"best busbw {best:.3g} GB/s",
    )


def _slow_link(
    gpu: GpuData, ctx: CheckContext, records: Sequence[Mapping[str, Any]]
) -> Iterator[Verdict]:
    busbw = pair_busbw(records)
    if not busbw:
        return
    nodes = {n for p in busbw for n in p}
    if len(nodes) < 3:
        yield Verdict(
            check="slow-link",
            status=Status.SKIP,
            message=f"isolating a slow node needs 3 nodes or more, the run had {len(nodes)}",
        )
        return
    t = ctx.limits(SlowLinkThresholds)
    slow, suspects = slow_pairs(busbw, t.slow_link_warn_ratio)
    mine = [p for p in slow if gpu.node in p]
    own = [v for p, v in busbw.items() if gpu.node in p]
    if not own:
        yield Verdict(
            check="slow-link",
            status=Status.SKIP,
            message="this node was in no node-pair test of the rack",
        )
        return
    if not mine:
        best = max(own)
        yield Verdict(
            check="slow-link",
            status=Status.PASS,
            observed=round(best, 3),
            unit="GB/s",
            message=f"no slow pair with this node (best pair {best:.3g} GB/s)",
        )
        return
    parts = []
    worst_ratio = 1.0
    for pair in mine:
        others = median_of_others(busbw, pair) or 0.0
        ratio = busbw[pair] / others if others > 0 else 0.0
        worst_ratio = min(worst_ratio, ratio)
        parts.append(
            f"{pair[0]}-{pair[1]} {busbw[pair]:.3g} GB/s vs median of the other pairs "
            f"{others:.3g} GB/s"
        )
    if gpu.node in suspects:
        blame = f"node {gpu.node} is in every slow pair: its network link is the suspect"
    elif suspects:
        blame = f"node {', '.join(suspects)} is in every slow pair: that node is the suspect"
    else:
        blame = "one link between two nodes is slow: inspect its cable, NIC and switch port"
    failing = gpu.node in suspects or not suspects
    yield Verdict(
        check="slow-link",
        status=Status.FAIL if failing and worst_ratio < t.slow_link_fail_ratio else Status.WARN,
        observed=round(min(busbw[p] for p in mine), 3),
        unit="GB/s",
        action="reseat" if failing else "none",
        message=f"slow node pair(s) {'; '.join(parts)}; {blame}",
    )
