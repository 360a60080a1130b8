"""Pure: the report's first screen from its context: status counts, the pull list, the fleet grid,
and per-SKU distributions with their outliers and threshold lines.

The pull list is every non-PASS card with what a technician needs at the rack (node, GPU index,
PCI bus id, serial), the one-line reason (its worst verdict's message) and the action. The grid
is node × GPU index, each cell linking to the card's anchor. Each distribution is one metric
over one SKU's cards, computed once for the whole fleet: outliers by the robust z-score of
burnin/verdicts/peers.py (0.6745·(x − median)/MAD, Iglewicz & Hoaglin 1993, with the same
``peer_z`` cutoff and ``peer_mad_floor``), thresholds from the run's own ``[thresholds]``.
"""

from __future__ import annotations

import statistics
from typing import Any

STATUSES = ("ERROR", "FAIL", "WARN", "PASS")
_MAD_K = 0.6745  # robust z-score constant (Iglewicz & Hoaglin 1993)


def anchor(node: str, index: int) -> str:
    return f"gpu-{node}-{index}"


def counts(gpus: list[dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for g in gpus:
        out[g["status"]] = out.get(g["status"], 0) + 1
    return out


def pull_list(gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every non-PASS card, worst first (the context's order), with its reason and action."""
    rows = []
    for g in gpus:
        if g["status"] == "PASS":
            continue
        bad = [v for v in g["verdicts"] if v["status"] == g["status"]]
        actions = [v["action"] for v in g["verdicts"] if v["status"] in ("WARN", "FAIL", "ERROR")]
        actions = list(dict.fromkeys(a for a in actions if a and a != "none"))
        rows.append(
            {
                "node": g["node"],
                "index": g["index"],
                "pci_bus_id": g.get("pci_bus_id"),
                "serial": g.get("serial"),
                "sku": g.get("sku"),
                "status": g["status"],
                "check": bad[0]["check"] if bad else "",
                "reason": bad[0]["message"] if bad else "",
                "more": max(0, len(bad) - 1),
                "action": ", ".join(actions) or "none",
                "anchor": anchor(g["node"], g["index"]),
            }
        )
    return rows


def grid(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """Node rows × GPU-index columns; a missing slot is None."""
    by_node: dict[str, dict[int, dict[str, Any]]] = {}
    for g in gpus:
        by_node.setdefault(g["node"], {})[g["index"]] = {
            "status": g["status"],
            "anchor": anchor(g["node"], g["index"]),
        }
    columns = sorted({i for cells in by_node.values() for i in cells})
    rows = [
        {"node": node, "cells": [cells.get(i) for i in columns]}
        for node, cells in sorted(by_node.items())
    ]
    return {"columns": columns, "rows": rows}


def outliers(values: list[tuple[str, float]], z_cut: float, mad_floor: float) -> list[int]:
    """Positions of the robust-z outliers among (card, value) pairs (both tails)."""
    xs = [v for _, v in values]
    if len(xs) < 3:
        return []
    median = statistics.median(xs)
    mad = statistics.median(abs(x - median) for x in xs)
    mad = max(mad, abs(median) * mad_floor) or 1e-12
    return [i for i, x in enumerate(xs) if abs(_MAD_K * (x - median) / mad) > z_cut]


def distributions(
    gpus: list[dict[str, Any]], nodes: list[dict[str, Any]], thresholds: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per SKU, per metric: the values, the outliers and the threshold lines to draw."""
    z_cut = float(thresholds.get("peer_z") or 3.5)
    mad_floor = float(thresholds.get("peer_mad_floor") or 0.01)
    node_busbw = {n["node"]: n.get("allreduce_busbw_gbps") for n in nodes}
    by_sku: dict[str, list[dict[str, Any]]] = {}
    for g in gpus:
        by_sku.setdefault(g.get("sku") or "unknown SKU", []).append(g)
    out = []
    for sku, cards in sorted(by_sku.items()):
        metrics: list[dict[str, Any]] = []
        for key in ("matmul_tflops", "membw_gbps", "max_temp_c", "tflops_per_w"):
            values = [
                (f"{g['node']}/{g['index']}", value)
                for g in cards
                if (value := _value(g, key)) is not None
            ]
            if values:
                metrics.append(
                    _metric(key, values, _lines(key, cards, thresholds), z_cut, mad_floor)
                )
        sku_nodes = sorted({g["node"] for g in cards})
        busbw = [(n, float(node_busbw[n])) for n in sku_nodes if node_busbw.get(n) is not None]
        if busbw:
            floor = thresholds.get("min_allreduce_busbw_gbps") or 0
            lines = [(float(floor), "floor")] if floor else []
            metrics.append(_metric("allreduce_busbw_gbps", busbw, lines, z_cut, mad_floor))
        out.append({"sku": sku, "cards": len(cards), "metrics": metrics})
    return out


def _value(g: dict[str, Any], key: str) -> float | None:
    if key == "tflops_per_w":
        tflops, watts = g["metrics"].get("matmul_tflops"), g.get("load_power_w")
        ok = isinstance(tflops, int | float) and isinstance(watts, int | float) and watts > 0
        return float(tflops) / float(watts) if ok else None
    value = g["metrics"].get(key)
    return float(value) if isinstance(value, int | float) else None


def _metric(
    key: str, values: list[tuple[str, float]], lines: list[tuple[float, str]], z: float, m: float
) -> dict[str, Any]:
    marked = outliers(values, z, m)
    xs = [v for _, v in values]
    return {
        "key": key,
        "values": xs,
        "median": statistics.median(xs),
        "min": min(xs),
        "max": max(xs),
        "outliers": [values[i] for i in marked],
        "lines": lines,
    }


def _lines(key: str, cards: list[dict[str, Any]], t: dict[str, Any]) -> list[tuple[float, str]]:
    """The thresholds of ``key`` for one SKU, in the metric's own unit."""
    lines: list[tuple[float, str]] = []
    first = cards[0].get("performance") or {}
    if key == "matmul_tflops":
        peak = next((m["peak_tflops"] for m in first.get("matmul") or [] if m.get("main")), None)
        for name, words in (
            ("throughput_warn_peak_fraction", "WARN"),
            ("throughput_fail_peak_fraction", "FAIL"),
        ):
            if peak and t.get(name):
                lines.append((peak * float(t[name]), f"{words} {float(t[name]):.0%} of peak"))
        if t.get("min_matmul_tflops"):
            lines.append((float(t["min_matmul_tflops"]), "floor"))
    elif key == "membw_gbps":
        peak = (first.get("membw") or {}).get("peak_gbps")
        for name, words in (
            ("membw_warn_peak_fraction", "WARN"),
            ("membw_fail_peak_fraction", "FAIL"),
        ):
            if peak and t.get(name):
                lines.append((peak * float(t[name]), f"{words} {float(t[name]):.0%} of peak"))
    elif key == "max_temp_c":
        if t.get("warn_temp_c"):
            lines.append((float(t["warn_temp_c"]), "WARN"))
        slowdown = [g["slowdown_temp_c"] for g in cards if g.get("slowdown_temp_c")]
        if t.get("fail_temp_c"):
            lines.append((float(t["fail_temp_c"]), "FAIL"))
        elif slowdown:
            lines.append((float(statistics.median(slowdown)), "slowdown (FAIL)"))
    return lines
