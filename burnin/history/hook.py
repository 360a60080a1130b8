"""What ``burnin run --history URL`` does once the run's own reports are written.

1. open (and migrate) the history database; a failure is a :class:`HistoryError` (exit 2) and
   the run's reports, already on disk, stay as they are;
2. write the past of each card of the run into the manifest (``history``), so the
   ``regression`` check can judge it, run the verdicts stage again and re-render the reports;
3. ingest the run, keyed by its run id.

The same steps serve ``burnin history ingest``, without step 2 for a run that is already judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from burnin.history.ingest import Ingested, ingest_run, load_report
from burnin.history.keys import card_key

# Past runs per card and figure carried into the manifest: enough for a median and a slope,
# bounded so a card swept every night for years keeps report.json small.
PAST_RUNS = 20


@dataclass
class HistoryOutcome:
    context: dict[str, Any]
    ingested: Ingested


def attach_baseline(engine: Any, run_dir: Path, url: str) -> int:
    """Write ``manifest["history"]`` for the run in ``run_dir``; returns the cards with a past."""
    from burnin.history.db import describe
    from burnin.history.queries import baseline_for
    from burnin.store import RunStore

    store = RunStore(run_dir)
    manifest = store.read_manifest()
    report = load_report(run_dir)
    keys = sorted({card_key(g) for g in report.get("gpus", [])})
    cards = baseline_for(engine, str(report.get("run_id")), keys, manifest.get("started_at"))
    for past in cards.values():
        past["runs"] = past["runs"][-PAST_RUNS:]
        past["figures"] = {f: pts[-PAST_RUNS:] for f, pts in past["figures"].items()}
    manifest["history"] = {
        "database": describe(url),
        "cards": cards,
    }
    store.write_manifest(manifest)
    return len(cards)


def after_run(
    run_dir: Path,
    url: str | None,
    strict: bool = False,
    now: datetime | None = None,
) -> HistoryOutcome:
    """Judge the run against the history, re-render its reports, then ingest it."""
    from burnin.history.db import connect, default_url
    from burnin.reports import judge_and_render

    url = url or default_url()
    engine = connect(url)
    try:
        attach_baseline(engine, run_dir, url)
        # The verdicts stage again, now with the regression check's input.
        context = judge_and_render(run_dir, strict=strict)
        ingested = ingest_run(engine, run_dir, now=now)
    finally:
        engine.dispose()
    return HistoryOutcome(context, ingested)
