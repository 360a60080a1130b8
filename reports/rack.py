"""Pure: the rack's cross-node figures from ``rack.jsonl`` in the run directory, for the report.

A multi-node run writes ``rack.jsonl`` at the run directory's root, one JSON object per line:
``rack-allreduce`` (one per message size: ranks, i.e. every device of the nodes that took
part, nodes, backend, size_bytes, time_s, algbw_gbps, busbw_gbps, wrong), ``node-pair``
(busbw between two nodes), ``rack-error`` (a node that could not take part) and
``rack-summary`` (the best busbw and the slow pairs). :func:`read_rack`
reads it tolerantly (no file: no rack section; a torn last line, the writer cut off, is
dropped), :func:`rack_block` turns it into the report's ``rack`` block, with the whole rack's
power ramp: each node's peak and the rack's peak (the nodes' power summed per sampler tick).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from burnin.store import RunData

RACK_FILE = "rack.jsonl"


def read_rack(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/rack.jsonl``; [] when there is none. Lines that are not a
    JSON object are dropped (a torn last line is the writer cut off mid-line)."""
    try:
        text = (Path(run_dir) / RACK_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("type"), str):
            records.append(record)
    return records


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _pair(nodes: Any) -> tuple[str, str] | None:
    if isinstance(nodes, list) and len(nodes) == 2:
        return str(nodes[0]), str(nodes[1])
    return None


def rack_block(records: list[dict[str, Any]], run: RunData | None = None) -> dict[str, Any] | None:
    """The report's ``rack`` block; None when the run has no rack records."""
    if not records:
        return None
    sizes: dict[float, dict[str, Any]] = {}
    for r in records:
        if r["type"] == "rack-allreduce" and (size := _num(r.get("size_bytes"))) is not None:
            sizes[size] = {  # a size measured twice: the last line stands
                "size_bytes": int(size),
                "ranks": int(_num(r.get("ranks")) or 0),
                "backend": str(r.get("backend") or ""),
                "time_us": None if (t := _num(r.get("time_s"))) is None else t * 1e6,
                "algbw_gbps": _num(r.get("algbw_gbps")),
                "busbw_gbps": _num(r.get("busbw_gbps")),
                "wrong": int(_num(r.get("wrong")) or 0),
            }
    summaries = [r for r in records if r["type"] == "rack-summary"]
    summary = summaries[-1] if summaries else {}
    slow = {p for s in summary.get("slow_pairs") or [] if (p := _pair(s))}
    slow |= {(b, a) for a, b in slow}
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if r["type"] == "node-pair" and (p := _pair(r.get("nodes"))):
            pairs[tuple(sorted(p))] = {  # type: ignore[index]
                "nodes": list(p),
                "size_bytes": int(_num(r.get("size_bytes")) or 0),
                "busbw_gbps": _num(r.get("busbw_gbps")),
                "wrong": int(_num(r.get("wrong")) or 0),
                "slow": p in slow,
            }
    others = [p["busbw_gbps"] for p in pairs.values() if not p["slow"] and p["busbw_gbps"]]
    for p in pairs.values():
        p["ratio"] = (
            round(p["busbw_gbps"] / statistics.median(others), 4)
            if others and p["busbw_gbps"] is not None
            else None
        )
    listed = sorted(sizes.values(), key=lambda s: s["size_bytes"])
    best = _num(summary.get("busbw_gbps"))
    if best is None:
        best = max((s["busbw_gbps"] for s in listed if s["busbw_gbps"] is not None), default=None)
    return {
        "nodes": [str(n) for n in summary.get("nodes") or []],
        "busbw_gbps": best,
        "ranks": max((s["ranks"] for s in listed), default=None),
        "backend": listed[-1]["backend"] if listed else None,
        "wrong": sum(s["wrong"] for s in listed),
        "allreduce": listed,
        "pairs": sorted(pairs.values(), key=lambda p: (not p["slow"], p["nodes"])),
        "pair_median_gbps": round(statistics.median(others), 4) if others else None,
        "slow_pairs": sorted([list(p) for p in slow if p[0] <= p[1]]),
        "errors": [
            {"node": str(r.get("node") or ""), "message": str(r.get("message") or "")}
            for r in records
            if r["type"] == "rack-error"
        ],
        "power": rack_power(run) if run is not None else None,
    }


def rack_power(run: RunData) -> dict[str, Any]:
    """Peak power per node and of the whole rack (W): what the rack's feeds must carry."""
    from burnin.reports.power import node_totals

    totals = node_totals(run)
    nodes = [
        {"node": n, "peak_w": round(float(t.max()), 3) if len(t) else None}
        for n, t in sorted(totals.items())
    ]
    import pandas as pd

    kept = {n: t for n, t in totals.items() if len(t)}
    rack = pd.concat(kept, axis=1).sort_index().ffill().sum(axis=1) if kept else None
    peaks = [p["peak_w"] for p in nodes if p["peak_w"] is not None]
    return {
        "nodes": nodes,
        # Nodes sampled on their own clocks: summed per tick (the last reading of each node
        # carried forward), and the sum of the peaks as the bound if they all peaked together.
        "rack_peak_w": round(float(rack.max()), 3) if rack is not None and len(rack) else None,
        "sum_of_node_peaks_w": round(sum(peaks), 3) if peaks else None,
    }
