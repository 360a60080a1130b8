"""Pure: each node's all-reduce figures for the report (busbw per size, the pair matrix).

What the all-reduce kernel recorded (kernels/allreduce.py), per node, for the report's node
table and pair heatmap; the verdicts on those figures are ``allreduce`` and ``slow-link``
(burnin/verdicts/network.py).
"""

from __future__ import annotations

import statistics
from typing import Any

from burnin.kernels.collectives import typical_pair_gbps
from burnin.verdicts.model import GpuData
from burnin.verdicts.network import last_allreduce


def allreduce_summary(gpus: list[GpuData]) -> dict[str, dict[str, Any]]:
    """Per node, the all-reduce figures the report shows (pure; from the records).

    Returns:
        {node: {"busbw_gbps", "avg_busbw_gbps", "world_size", "backend", "sizes", "pairs",
        "wrong", "pair_size_bytes", "typical_pair_gbps", "matrix"}}. The busbw figures are the
        median over the node's devices (equal in a healthy run: the group's time is the
        slowest rank's).
    """
    out: dict[str, dict[str, Any]] = {}
    for node in sorted({g.node for g in gpus}):
        results = [r for g in gpus if g.node == node and (r := last_allreduce(g))]
        measured = [r for r in results if r.get("sizes")]
        if not measured:
            continue
        first = max(measured, key=lambda r: len(r.get("pairs") or []))
        pairs = first.get("pairs") or []
        out[node] = {
            "busbw_gbps": _median(r["metrics"].get("allreduce_busbw_gbps") for r in measured),
            "avg_busbw_gbps": _median(
                r["metrics"].get("allreduce_avg_busbw_gbps") for r in measured
            ),
            "world_size": first.get("world_size"),
            "backend": first.get("backend"),
            "sizes": first.get("sizes") or [],
            "pairs": pairs,
            "wrong": sum(int(r.get("wrong") or 0) for r in results),
            **_matrix(pairs),
        }
    return out


def _matrix(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pair table as a device × device matrix with each cell's share of the typical pair."""
    busbw = {(int(p["devices"][0]), int(p["devices"][1])): float(p["busbw_gbps"]) for p in pairs}
    if not busbw:
        return {"pair_size_bytes": None, "typical_pair_gbps": None, "matrix": None}
    typical = typical_pair_gbps(busbw)
    devices = sorted({d for pair in busbw for d in pair})

    def cell(a: int, b: int) -> dict[str, Any] | None:
        value = busbw.get((min(a, b), max(a, b)))
        if a == b or value is None:
            return None
        ratio = round(value / typical, 4) if typical else None
        return {"peer": b, "busbw_gbps": value, "ratio": ratio}

    rows = [{"device": a, "cells": [cell(a, b) for b in devices]} for a in devices]
    return {
        "pair_size_bytes": pairs[0].get("size_bytes"),
        "typical_pair_gbps": round(typical, 6),
        "matrix": {"devices": devices, "rows": rows},
    }


def _median(values: Any) -> float | None:
    found = [float(v) for v in values if isinstance(v, int | float)]
    return round(statistics.median(found), 6) if found else None
