"""Reports, installed as ``burnin.reports``: store + verdicts -> context -> every output.

The outputs are :data:`OUTPUTS`: HTML, report.json, JUnit XML, the Prometheus textfile and
every telemetry sample as Parquet. ``write_reports`` renders what the verdicts stage wrote
(``verdicts.jsonl``); both ``burnin run`` (after its verdicts stage) and ``burnin report
RUN_DIR`` (after judging the run again) call it. It needs no torch, no GPU and no NVML, so a
report can be re-rendered on any laptop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from burnin.store import RunData, RunStore, frozen

PROM_FILE = "burnin.prom"
OUTPUTS = ("report.html", "report.json", "junit.xml", "burnin.prom", "telemetry.parquet")


def judge_and_render(
    run_dir: Path,
    strict: bool = False,
    prom_dir: Path | None = None,
    load: Callable[[], RunData] | None = None,
) -> dict[str, Any]:
    """The verdicts stage, then every output, over one read of the store.

    ``load`` reads the run (default: ``run_dir``'s store); what it returns is judged
    (``verdicts.jsonl``) and rendered (:func:`write_reports`), and kept out of the cycle
    collector's passes meanwhile (:func:`burnin.store.frozen`).
    """
    from burnin.verdicts import evaluate

    with frozen(load or RunStore(run_dir).load) as run:
        evaluate(run)
        return write_reports(run_dir, strict=strict, prom_dir=prom_dir, run=run)


def write_reports(
    run_dir: Path,
    strict: bool = False,
    prom_dir: Path | None = None,
    run: RunData | None = None,
) -> dict[str, Any]:
    """Render every output of ``run_dir`` from its store and ``verdicts.jsonl``.

    With ``prom_dir`` (node_exporter's textfile directory), ``burnin.prom`` is written there
    too, atomically, replacing the previous run's series. ``run`` is the store already loaded
    (by the verdicts stage, which judged this same run): reading a fleet's samples once instead
    of twice is most of a fleet report's time.

    Returns:
        The context the outputs were made from.

    Raises:
        StoreError: unreadable store, or no verdicts yet (:func:`burnin.verdicts.evaluate`).
    """
    from burnin.reports.context import build_context
    from burnin.reports.html import render_html
    from burnin.reports.junit import junit_xml
    from burnin.reports.machine import report_json
    from burnin.reports.parquet import write_parquet
    from burnin.reports.prom import write_textfile
    from burnin.verdicts.stage import read_verdicts

    verdicts = read_verdicts(run_dir)
    loaded = run if run is not None else RunStore(run_dir).load()
    context = build_context(loaded, verdicts, strict=strict)
    rendered = {
        "report.html": render_html(context),
        "report.json": report_json(context),
        "junit.xml": junit_xml(context),
    }
    for name, text in rendered.items():
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, run_dir / name)
    write_textfile(context, run_dir / "burnin.prom")
    write_parquet(loaded, run_dir / "telemetry.parquet")
    if prom_dir is not None:
        write_textfile(context, prom_dir / PROM_FILE)
    return context
