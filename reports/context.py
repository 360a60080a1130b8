"""Pure: a run store and its verdicts -> one plain dict that every output renders.

The verdicts come from ``verdicts.jsonl`` (the verdicts stage, burnin/verdicts/stage.py): no
check runs here. The outputs are HTML, report.json, JUnit and Prometheus.

All aggregation happens here with pandas (peak temperature, energy, time series for the plots),
never in templates. The dict's top level is report.json's ``burnin.report/1`` schema; the
``series`` entries and a few presentation fields are dropped from the JSON by ``machine.py``.
Devices are sorted worst first, so the card that needs attention is at the top of every output.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd

from burnin.errors import EXIT_INCOMPLETE, EXIT_PASS
from burnin.skus import resolve
from burnin.store import RunData
from burnin.verdicts.model import GpuData, Status, device_status, exit_code, worst
from burnin.verdicts.stage import Verdicts, gpu_data

REPORT_SCHEMA = "burnin.report/1"
_SERIES = ("temp_c", "power_w", "sm_clock_mhz")


def build_context(run: RunData, verdicts: Verdicts, strict: bool = False) -> dict[str, Any]:
    """The report of ``run`` with the verdicts the verdicts stage gave it (verdicts.jsonl).

    A device of the store that has no verdict at all is ERROR (nothing judged it).
    """
    manifest = run.manifest
    gpus = gpu_data(run)
    entries = [_gpu_entry(g, verdicts.get((g.node, g.index), [])) for g in gpus]
    entries.sort(key=lambda e: (-Status[e["status"]], e["node"], e["index"]))
    statuses = [Status[e["status"]] for e in entries]
    run_status = worst(statuses) if entries else Status.ERROR
    code = exit_code(statuses, strict)
    unfinished = not manifest.get("finished_at") or manifest.get("interrupted")
    if unfinished and code == EXIT_PASS:  # a FAIL found before the stop still stands
        run_status, code = Status.ERROR, EXIT_INCOMPLETE
    warnings = [
        f"{host}: torn last line in {name} (the writer was cut off; earlier records kept)"
        for host, node in run.nodes.items()
        for name in node.torn_lines
    ]
    if unfinished:
        warnings.append(
            "the run did not finish (interrupted, killed or still running): "
            "this report shows what was recorded up to that point"
        )
    from burnin.reports.figures import add_energy
    from burnin.reports.power import node_power

    power, power_series = node_power(run)  # node total power_w over time, device starts
    context = {
        "schema": REPORT_SCHEMA,
        "run_id": manifest.get("run_id", run.path.name),
        "profile": manifest.get("profile"),
        "status": run_status.name,
        "exit_code": code,
        "strict": strict,
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "interrupted": bool(manifest.get("interrupted")),
        "energy_kwh": None,  # with "cost": add_energy below
        "device_note": manifest.get("device_note", ""),
        "versions": manifest.get("versions", {}),
        "gpus": entries,
        "nodes": _nodes(entries, gpus),
        "checks": _check_summary(entries),
        "warnings": warnings,
        "power": power,
        "series": {"node_power_w": power_series},  # plot data only: not in report.json
        **_labels(manifest),
        # each card's past from the history database (burnin/history/hook.py), when judged
        **({"history": manifest["history"]} if "history" in manifest else {}),
        **_rack(run),  # the cross-node run's rack.jsonl, when there is one (reports/rack.py)
    }
    add_energy(context, manifest)  # per node and run, and the cost (reports/figures.py)
    return context


def _rack(run: RunData) -> dict[str, Any]:
    from burnin.reports.rack import rack_block, read_rack

    block = rack_block(read_rack(run.path), run)
    # "rack" is the rack's name (report.rack); the rack run's figures are "rack_run".
    return {"rack_run": block} if block else {}


def _labels(manifest: dict[str, Any]) -> dict[str, Any]:
    """Where the run stood, how long it ran and what it was judged by (the HTML's first line)."""
    config = manifest.get("config") or {}
    report = config.get("report") or {}
    elapsed = manifest.get("elapsed_s")
    return {
        "site": str(report.get("site") or ""),
        "rack": str(report.get("rack") or ""),
        "duration_s": float(elapsed) if isinstance(elapsed, int | float) else None,
        "thresholds": dict(config.get("thresholds") or {}),
    }


def _gpu_entry(gpu: GpuData, verdicts: list[Any]) -> dict[str, Any]:
    from burnin.reports.figures import kernel_seconds
    from burnin.reports.performance import performance
    from burnin.reports.timeline import timeline

    inv = gpu.inventory
    samples = _frame(gpu.samples)
    metrics: dict[str, Any] = {
        "matmul_tflops": None,
        "membw_gbps": None,
        "max_temp_c": None,
        "energy_kwh": None,
    }
    for result in gpu.results():
        metrics.update(result.get("metrics", {}))
    if "temp_c" in samples and samples["temp_c"].notna().any():
        metrics["max_temp_c"] = float(samples["temp_c"].max())
    metrics["energy_kwh"] = _energy_kwh(samples)
    perf = performance(gpu)  # per-dtype TFLOP/s, GB/s, fractions of peak, findings
    metrics.update(perf["fractions"])
    ordered = sorted(verdicts, key=lambda v: (-v.status, v.check))
    status = device_status(verdicts)
    # Plots are drawn for flagged cards only: a PASS card is summarised, which keeps a fleet's
    # report small and fast (benchmarks/bench_report.py).
    flagged = status != Status.PASS
    return {
        "node": gpu.node,
        "index": gpu.index,
        "kind": inv.get("kind", "cuda"),
        "name": inv.get("name"),
        "uuid": inv.get("uuid"),
        "serial": inv.get("serial"),
        "sku": inv.get("sku") or getattr(resolve(inv), "key", None),
        "status": status.name,
        "verdicts": [v.to_dict() for v in ordered],
        "kernel_s": kernel_seconds(gpu.records),  # time per kernel (junit.xml testcase times)
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
        "wrong": perf["findings"],
        "performance": {k: v for k, v in perf.items() if k not in ("findings", "fractions")},
        "series": _series(samples) if flagged else {},
        "telemetry": timeline(gpu) if flagged else None,  # presentation only (timeline.py)
        "pci_bus_id": inv.get("pci_bus_id"),
        "slowdown_temp_c": inv.get("slowdown_temp_c"),
        "load_power_w": _load_power_w(samples),
    }


def _load_power_w(samples: pd.DataFrame) -> float | None:
    """Median power while the card worked (utilisation ≥ 50 %, else every reading): the
    denominator of perf/W."""
    if "power_w" not in samples:
        return None
    power = samples["power_w"].to_numpy(dtype=float)
    known = ~np.isnan(power)
    if not known.any():
        return None
    if "util_pct" in samples:
        with np.errstate(invalid="ignore"):
            busy = samples["util_pct"].to_numpy(dtype=float) >= 50
        if busy.any():
            power, known = power[busy], known[busy]
    # The median of the readings there are (NaN where there are none), as pandas gives it.
    return round(float(np.median(power[known])) if known.any() else math.nan, 3)


def _frame(samples: list[dict[str, Any]]) -> pd.DataFrame:
    """The numeric columns the report reads, built column by column: a frame of every field
    (lists of clock reasons included) costs ten times as much, once per card of a fleet."""
    keys = ("elapsed_s", *_SERIES, "energy_j", "util_pct")
    columns = {k: list(map(dict.get, samples, repeat(k))) for k in keys}
    return pd.DataFrame(
        {k: _numeric(v) for k, v in columns.items() if any(x is not None for x in v)}
    )


def _numeric(values: list[Any]) -> Any:
    """``pd.to_numeric(values, errors="coerce")`` of one column; for a column of floats (and
    nulls) or of integers, the same array straight from numpy, which costs a fleet's report
    seconds less."""
    kinds = set(map(type, values))
    if kinds <= {float, type(None)}:
        return np.array(values, dtype=float)  # None is NaN, as to_numeric makes it
    if kinds == {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:  # beyond int64: to_numeric's own choice of type
            pass
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")


def _energy_kwh(samples: pd.DataFrame) -> float | None:
    """reports/figures.py's energy of the card's samples; for samples in time order, its
    interval rule is applied to whole columns at once (the same float operations per interval,
    summed in the same order), the per-sample loop costing seconds over a fleet."""
    from burnin.reports.figures import J_PER_KWH, energy_kwh

    keys = [k for k in ("elapsed_s", "energy_j", "power_w") if k in samples]
    numeric = all(samples[k].dtype.kind in "fi" for k in keys)
    if len(samples) > 1 and "elapsed_s" in keys and numeric:
        t = samples["elapsed_s"].to_numpy(dtype=float)
        if np.isfinite(t).all() and (t[1:] > t[:-1]).all():
            missing = np.full(len(t), np.nan)
            c, w = (
                samples[k].to_numpy(dtype=float) if k in samples else missing
                for k in ("energy_j", "power_w")
            )
            with np.errstate(invalid="ignore", over="ignore"):
                by_counter = np.isfinite(c[:-1]) & np.isfinite(c[1:]) & (c[1:] >= c[:-1])
                by_power = ~by_counter & np.isfinite(w[:-1]) & np.isfinite(w[1:])
                trapezoid = np.maximum(0.0, (w[:-1] + w[1:]) / 2 * (t[1:] - t[:-1]))
                steps = np.where(by_counter, c[1:] - c[:-1], trapezoid)[by_counter | by_power]
            if not steps.size:
                return None
            total = 0.0
            for step in steps.tolist():
                total += step
            return total / J_PER_KWH
    columns = [samples[k].tolist() for k in keys]
    return energy_kwh(dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True))


def _series(samples: pd.DataFrame) -> dict[str, list[list[float]]]:
    """Time series for the plots: [[elapsed_s, value], ...], at most ~300 points each."""
    out: dict[str, list[list[float]]] = {}
    if samples.empty or "elapsed_s" not in samples:
        return out
    step = max(1, len(samples) // 300)
    for key in _SERIES:
        if key in samples and samples[key].notna().any():
            frame = samples[["elapsed_s", key]].dropna().iloc[::step]
            out[key] = frame.astype(float).values.tolist()
    return out


def _nodes(
    entries: list[dict[str, Any]], gpus: list[GpuData] | None = None
) -> list[dict[str, Any]]:
    from burnin.reports.allreduce import allreduce_summary

    nodes: dict[str, list[Status]] = {}
    for e in entries:
        nodes.setdefault(e["node"], []).append(Status[e["status"]])
    # The all-reduce figures of each node (kernels/allreduce.py): busbw, per size, per pair.
    allreduce = allreduce_summary(gpus or [])
    return [
        {
            "node": n,
            "status": worst(s).name,
            "allreduce_busbw_gbps": allreduce.get(n, {}).get("busbw_gbps"),
            "gpus": len(s),
            "allreduce": allreduce.get(n),
        }
        for n, s in sorted(nodes.items())
    ]


def _check_summary(entries: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for e in entries:
        for v in e["verdicts"]:
            counts = summary.setdefault(v["check"], {})
            counts[v["status"]] = counts.get(v["status"], 0) + 1
    return dict(sorted(summary.items()))
