"""Prometheus series from the history, per GPU: days since the card last passed, regression flag.

:func:`history_series` reads only the report context (the ``history`` block the run's
manifest carries and the card's verdicts), so burnin.prom is written without a database
connection, by ``burnin run`` and again by ``burnin report``; :class:`HistoryCollector` hands
the series to the writer (reports/prom.py) as prometheus_client families.
"""

from __future__ import annotations

from typing import Any

from burnin.history.keys import card_key, parse_time

SERIES_HELP = {
    "burnin_gpu_days_since_pass": "Days between this run and the card's last PASS run.",
    "burnin_gpu_regression": "1 when the card is worse than its own past (regression WARN).",
    "burnin_gpu_history_runs": "Past runs of this card in the history database.",
}


def history_series(context: dict[str, Any]) -> dict[tuple[str, int], dict[str, float]]:
    """{(node, index): {series name: value}} for every GPU; empty without a history."""
    history = context.get("history")
    if not isinstance(history, dict):
        return {}
    started = parse_time(context.get("started_at"))
    out: dict[tuple[str, int], dict[str, float]] = {}
    for gpu in context.get("gpus", []):
        past = history.get("cards", {}).get(card_key(gpu), {})
        series: dict[str, float] = {
            "burnin_gpu_regression": float(
                any(v["check"] == "regression" and v["status"] == "WARN" for v in gpu["verdicts"])
            ),
            "burnin_gpu_history_runs": float(len(past.get("runs", []))),
        }
        last_pass = parse_time(past.get("last_pass_at"))
        if gpu.get("status") == "PASS":
            series["burnin_gpu_days_since_pass"] = 0.0
        elif last_pass is not None and started is not None:
            days = (started - last_pass).total_seconds() / 86400.0
            series["burnin_gpu_days_since_pass"] = round(max(0.0, days), 3)
        out[(gpu["node"], gpu["index"])] = series
    return out


# The card labels of burnin.prom (reports/prom.py), so history series join the run's series.
CARD_LABELS = ("node", "gpu", "uuid", "serial", "sku")


def families(context: dict[str, Any]) -> list[Any]:
    """:func:`history_series` as prometheus_client gauge families (none without a history)."""
    from prometheus_client.core import GaugeMetricFamily

    series = history_series(context)
    if not series:
        return []
    gpus = {(g["node"], g["index"]): g for g in context.get("gpus", [])}
    out = []
    for name, help_text in SERIES_HELP.items():
        family = GaugeMetricFamily(name, help_text, labels=list(CARD_LABELS))
        for (node, index), values in sorted(series.items()):
            if name in values:
                gpu = gpus[(node, index)]
                card = [
                    "" if gpu.get(k) is None else str(gpu.get(k))
                    for k in ("node", "index", "uuid", "serial", "sku")
                ]
                family.add_metric(card, values[name])
        if family.samples:
            out.append(family)
    return out


class HistoryCollector:
    """A prometheus_client collector of :func:`families` for one report context."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context

    def collect(self) -> Any:
        yield from families(self.context)
