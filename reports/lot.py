"""The buyer's report of ``burnin inspect --from ... --out DIR``: report.html and report.json.

A seller's lot, judged from its nvidia-smi dumps (:func:`burnin.inspect.inspect_dumps`), becomes
a page to send back to the seller or attach to the purchase: the lot summary (cards per status,
every file and what became of it, findings about whole nodes), then every card worst first with
what was found, why, and the buyer's action. The page is rendered by the same strict, autoescaping
jinja2 environment as a run's report (:func:`burnin.reports.html.environment`), so file names
and device strings from the dumps are escaped; report.json is the ``burnin.inspect/1`` document
``burnin inspect --json`` prints.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from burnin.store import finite

OUTPUTS = ("report.html", "report.json")


def lot_context(data: dict[str, Any]) -> dict[str, Any]:
    """The template's plain context from a ``burnin.inspect/1`` document (pure)."""
    gpus = data.get("gpus", [])
    counts = Counter(g["status"] for g in gpus)
    actions = Counter(g.get("action", "none") for g in gpus if g["status"] != "PASS")
    return {
        **data,
        "counts": {s: counts[s] for s in ("FAIL", "ERROR", "WARN", "PASS") if counts[s]},
        "action_counts": dict(actions.most_common()),
        "files": data.get("files", []),
        "nodes": data.get("nodes", []),
        "actions": data.get("actions", {}),
    }


def render_lot_html(data: dict[str, Any]) -> str:
    from burnin.reports.html import environment

    return environment().get_template("inspect.html.j2").render(r=lot_context(data))


def report_json(data: dict[str, Any]) -> str:
    return json.dumps(finite(data), indent=2, ensure_ascii=True, allow_nan=False, default=str)


def write_lot_report(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.html and report.json into ``out_dir`` (created if needed); their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("report.html", render_lot_html(data)), ("report.json", report_json(data))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, out_dir / name)
        written.append(out_dir / name)
    return written
