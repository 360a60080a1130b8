"""burnin.prom: the run as Prometheus series for node_exporter's textfile collector.

Written with ``prometheus_client`` into a registry of its own (never the process-wide default
one) and saved with ``write_to_textfile``, which writes a temporary file and renames it, so the
collector never reads half a file. The client escapes label values (backslash, double quote,
newline), so a hostile serial number stays one label value.

Every series is unique (one name, one label set) and none carries the run id: a nightly sweep
overwrites the same series instead of starting new ones each night. Statuses follow the
Prometheus enum convention (one series per possible value, 1 for the current one, 0 for the
others), so ``burnin_check_status{status="FAIL"} == 1`` finds failing cards and a SKIP stays
apart from a PASS. A check with several verdicts on one card (``preflight``) shows its worst.

| family | labels | value |
|---|---|---|
| ``burnin_run_status`` | ``status`` | 1 for the run's status, else 0 |
| ``burnin_run_exit_code`` | | the exit code of the run (0, 3, 4) |
| ``burnin_run_start_timestamp_seconds``, ``burnin_run_end_timestamp_seconds`` | | Unix time |
| ``burnin_run_energy_joules``, ``burnin_run_cost`` | (``currency``) | whole run |
| ``burnin_node_energy_joules`` | ``node`` | per node |
| ``burnin_gpu_status`` | card labels, ``status`` | 1 for the card's status, else 0 |
| ``burnin_check_status`` | card labels, ``check``, ``status`` | 1 for the check's status |
| ``burnin_gpu_<figure>`` | card labels | the figures of :data:`FIGURES` |
| ``burnin_rack_allreduce_busbw_gbps`` | | best cross-node busbw of a rack run (GB/s) |
| ``burnin_rack_pair_busbw_gbps`` | ``node_a``, ``node_b`` | busbw between two nodes (GB/s) |

Card labels: ``node``, ``gpu`` (index), ``uuid``, ``serial``, ``sku`` ("" where unknown).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from burnin.reports.figures import J_PER_KWH
from burnin.verdicts.model import Status

CARD_LABELS = ("node", "gpu", "uuid", "serial", "sku")
STATUSES = tuple(s.name for s in Status)  # SKIP, PASS, WARN, FAIL, ERROR
# report.json metric -> (series suffix, help, scale): rates in the units the report and the
# datasheets use (TFLOP/s, GB/s = 1e9 B/s), temperature and energy in Prometheus base units.
FIGURES = {
    "matmul_tflops": ("matmul_tflops", "Matmul throughput of the main dtype (TFLOP/s).", 1.0),
    "membw_gbps": ("membw_gbps", "Device memory bandwidth (GB/s, 1e9 bytes/s).", 1.0),
    "pcie_h2d_gbps": ("pcie_h2d_gbps", "Host to device copy bandwidth (GB/s).", 1.0),
    "pcie_d2h_gbps": ("pcie_d2h_gbps", "Device to host copy bandwidth (GB/s).", 1.0),
    "allreduce_busbw_gbps": (
        "allreduce_busbw_gbps",
        "All-reduce bus bandwidth, nccl-tests definition (GB/s).",
        1.0,
    ),
    "max_temp_c": ("max_temp_celsius", "Peak GPU temperature during the run (Celsius).", 1.0),
    "energy_kwh": ("energy_joules", "Energy the card drew during the run (J).", J_PER_KWH),
}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _timestamp(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 time (``2026-11-23T10:05:00Z``); None if absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _enum(family: GaugeMetricFamily, labels: list[str], current: str) -> None:
    for status in STATUSES:
        family.add_metric([*labels, status], 1.0 if status == current else 0.0)


class _RunCollector(Collector):
    """Yields the families of one report context (a prometheus_client custom collector)."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context

    def collect(self) -> Iterator[Metric]:
        ctx = self.context
        run = GaugeMetricFamily(
            "burnin_run_status", "Status of the last burnin run (1 = current).", labels=["status"]
        )
        _enum(run, [], ctx["status"])
        yield run
        yield GaugeMetricFamily(
            "burnin_run_exit_code", "Exit code of the last burnin run.", value=ctx["exit_code"]
        )
        for key, name in (("started_at", "start"), ("finished_at", "end")):
            if (stamp := _timestamp(ctx.get(key))) is not None:
                yield GaugeMetricFamily(
                    f"burnin_run_{name}_timestamp_seconds",
                    f"When the last burnin run {'started' if name == 'start' else 'ended'}"
                    " (Unix time).",
                    value=stamp,
                )
        if (kwh := _number(ctx.get("energy_kwh"))) is not None:
            yield GaugeMetricFamily(
                "burnin_run_energy_joules",
                "Energy all cards drew during the run (J).",
                value=kwh * J_PER_KWH,
            )
        cost = ctx.get("cost") or {}
        if (amount := _number(cost.get("amount"))) is not None:
            family = GaugeMetricFamily(
                "burnin_run_cost",
                "Cost of the run's energy at energy.price_per_kwh.",
                labels=["currency"],
            )
            family.add_metric([_text(cost.get("currency"))], amount)
            yield family
        nodes = GaugeMetricFamily(
            "burnin_node_energy_joules", "Energy a node's cards drew (J).", labels=["node"]
        )
        for node in ctx.get("nodes", []):
            if (kwh := _number(node.get("energy_kwh"))) is not None:
                nodes.add_metric([_text(node["node"])], kwh * J_PER_KWH)
        if nodes.samples:
            yield nodes
        yield from self._cards(ctx["gpus"])
        yield from _rack(ctx.get("rack_run"))

    def _cards(self, gpus: list[dict[str, Any]]) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "burnin_gpu_status",
            "Worst verdict of a card (1 = current).",
            labels=[*CARD_LABELS, "status"],
        )
        checks = GaugeMetricFamily(
            "burnin_check_status",
            "Verdict of one check on one card, the worst where it has several (1 = current).",
            labels=[*CARD_LABELS, "check", "status"],
        )
        figures = {
            key: GaugeMetricFamily(f"burnin_gpu_{name}", text, labels=list(CARD_LABELS))
            for key, (name, text, _scale) in FIGURES.items()
        }
        for gpu in gpus:
            card = [_text(gpu.get(k)) for k in ("node", "index", "uuid", "serial", "sku")]
            _enum(status, card, gpu["status"])
            worst: dict[str, Status] = {}
            for v in gpu["verdicts"]:
                now = Status[v["status"]]
                worst[v["check"]] = max(worst.get(v["check"], now), now)
            for check, value in sorted(worst.items()):
                _enum(checks, [*card, check], value.name)
            for key, family in figures.items():
                if (value := _number(gpu["metrics"].get(key))) is not None:
                    family.add_metric(card, value * FIGURES[key][2])
        yield status
        yield checks
        yield from (f for f in figures.values() if f.samples)


def _rack(rack: dict[str, Any] | None) -> Iterator[Metric]:
    """The rack run's best cross-node busbw and each node pair's (reports/rack.py)."""
    if not rack:
        return
    if (best := _number(rack.get("busbw_gbps"))) is not None:
        yield GaugeMetricFamily(
            "burnin_rack_allreduce_busbw_gbps",
            "Best cross-node all-reduce bus bandwidth of the rack, nccl-tests definition (GB/s).",
            value=best,
        )
    pairs = GaugeMetricFamily(
        "burnin_rack_pair_busbw_gbps",
        "All-reduce bus bandwidth between two nodes of the rack (GB/s).",
        labels=["node_a", "node_b"],
    )
    for p in rack.get("pairs") or []:  # one entry per unordered pair (reports/rack.py)
        if (value := _number(p.get("busbw_gbps"))) is not None:
            pairs.add_metric([_text(n) for n in p["nodes"]], value)
    if pairs.samples:
        yield pairs


def registry(context: dict[str, Any]) -> CollectorRegistry:
    """A registry of its own holding the run's series (nothing of this process)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_RunCollector(context))
    # History hook: each card's days since its last PASS and regression flag
    # (burnin/history/prom.py); no series unless the run was judged against a history.
    from burnin.history.prom import HistoryCollector

    reg.register(HistoryCollector(context))
    return reg


def prometheus(context: dict[str, Any]) -> str:
    """The textfile as a string (text exposition format 0.0.4)."""
    return generate_latest(registry(context)).decode("utf-8")


def write_textfile(context: dict[str, Any], path: Path) -> Path:
    """Write ``path`` atomically (temporary file, then rename) for the textfile collector."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(os.fspath(path), registry(context))
    return path
