"""Reports, installed as ``burnin.reports``: store -> context -> HTML, JSON, JUnit, Prometheus.

``write_reports`` is what both ``burnin run`` (at the end) and ``burnin report RUN_DIR`` call;
it needs no torch, no GPU and no NVML, so a report can be re-rendered on any laptop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from burnin.store import RunStore

OUTPUTS = ("report.html", "report.json", "junit.xml", "burnin.prom")


def write_reports(run_dir: Path, strict: bool = False) -> dict[str, Any]:
    """Render every output into ``run_dir`` and return the context they were made from."""
    from burnin.reports.context import build_context
    from burnin.reports.html import render_html
    from burnin.reports.machine import junit_xml, prometheus, report_json

    context = build_context(RunStore(run_dir).load(), strict=strict)
    rendered = {
        "report.html": render_html(context),
        "report.json": report_json(context),
        "junit.xml": junit_xml(context),
        "burnin.prom": prometheus(context),
    }
    for name, text in rendered.items():
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, run_dir / name)
    return context
