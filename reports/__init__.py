"""Reports, installed as ``burnin.reports``: store + verdicts -> context -> HTML, JSON, JUnit, Prom.

``write_reports`` renders what the verdicts stage wrote (``verdicts.jsonl``); both ``burnin
run`` (after its verdicts stage) and ``burnin report RUN_DIR`` (after judging the run again)
call it. It needs no torch, no GPU and no NVML, so a report can be re-rendered on any laptop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from burnin.store import RunStore

OUTPUTS = ("report.html", "report.json", "junit.xml", "burnin.prom")


def write_reports(run_dir: Path, strict: bool = False) -> dict[str, Any]:
    """Render every output of ``run_dir`` from its store and ``verdicts.jsonl``.

    Returns:
        The context the outputs were made from.

    Raises:
        StoreError: unreadable store, or no verdicts yet (:func:`burnin.verdicts.evaluate`).
    """
    from burnin.reports.context import build_context
    from burnin.reports.html import render_html
    from burnin.reports.machine import junit_xml, prometheus, report_json
    from burnin.verdicts.stage import read_verdicts

    verdicts = read_verdicts(run_dir)
    context = build_context(RunStore(run_dir).load(), verdicts, strict=strict)
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
