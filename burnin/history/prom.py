"""Prometheus series from the history, per GPU: days since the card last passed, regression flag.

:func:`history_series` reads only the report context (the ``history`` block the run's
manifest carries and the card's verdicts), so the textfile can be written by any Prometheus
writer, now or later, without a database connection.
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


def textfile_lines(context: dict[str, Any], label: Any) -> list[str]:
    """Textfile-collector lines for :func:`history_series`; ``label`` escapes a label value."""
    series = history_series(context)
    if not series:
        return []
    gpus = {(g["node"], g["index"]): g for g in context.get("gpus", [])}
    out = []
    for name, help_text in SERIES_HELP.items():
        rows = []
        for (node, index), values in sorted(series.items()):
            if name in values:
                gpu = gpus[(node, index)]
                labels = (
                    f'node="{label(node)}",gpu="{index}",'
                    f'uuid="{label(gpu.get("uuid"))}",serial="{label(gpu.get("serial"))}"'
                )
                rows.append(f"{name}{{{labels}}} {values[name]}")
        if rows:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *rows]
    return out
