"""Add a finished run directory to the history, once: runs, nodes, cards, verdicts, figures.

The input is the run's ``report.json`` (schema ``burnin.report/1``, the stable contract) plus
each node's ``samples.jsonl`` for the figures the report does not carry (temperature at load
power, corrected ECC growth; :mod:`burnin.history.figures`). A run directory whose report is
missing is judged from its store first, as ``burnin report`` would, without writing into it. A
run is keyed by its run id: ingesting it again adds nothing, also when two hosts race (a
transaction that loses a race on a unique key rolls back whole and is tried again).
A rack run (one run directory, several ``nodes/``) is one run with many nodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from burnin.history import HistoryError
from burnin.history.figures import card_figures
from burnin.history.keys import card_key, parse_time


@dataclass(frozen=True)
class Ingested:
    run_id: str
    added: bool  # False: the run was already in the history
    cards: int


def load_report(run_dir: Path) -> dict[str, Any]:
    """report.json of ``run_dir``, or the same context built from its store (nothing written)."""
    path = run_dir / "report.json"
    if path.is_file():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HistoryError(f"{path}: unreadable report ({exc})") from None
        if isinstance(report, dict) and report.get("schema") == "burnin.report/1":
            return report
        raise HistoryError(f"{path}: not a burnin.report/1 report")
    from burnin.reports.context import build_context
    from burnin.store import RunStore
    from burnin.verdicts import evaluate
    from burnin.verdicts.stage import gpu_data

    run = RunStore(run_dir).load()
    # judged in memory (a list of devices is never written back), as the run recorded it
    thresholds = run.manifest.get("config", {}).get("thresholds", {})
    return build_context(run, evaluate(gpu_data(run), thresholds, run.manifest))


def node_samples(run_dir: Path, node: str) -> dict[int, list[dict[str, Any]]]:
    from burnin.store import read_jsonl, safe_name

    records, _ = read_jsonl(run_dir / "nodes" / safe_name(node) / "samples.jsonl")
    out: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        if isinstance(record.get("device"), int):
            out.setdefault(record["device"], []).append(record)
    return out


# Attempts when another host's transaction wins a race on a unique key (the run, or a new card
# both runs brought): the retry sees that row and either stops (same run) or reuses it (card).
_ATTEMPTS = 3


def ingest_run(engine: Any, run_dir: Path, now: datetime | None = None) -> Ingested:
    """Add ``run_dir`` to the history unless its run id is already there."""
    from sqlalchemy.exc import IntegrityError

    report = load_report(run_dir)
    for attempt in range(_ATTEMPTS):
        try:
            return _ingest(engine, run_dir, report, now)
        except IntegrityError as exc:
            if attempt == _ATTEMPTS - 1:
                raise HistoryError(
                    f"{run_dir}: could not be added to the history ({exc.orig})"
                ) from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _ingest(engine: Any, run_dir: Path, report: dict[str, Any], now: datetime | None) -> Ingested:
    """One transaction: the run and everything in it, or nothing."""
    from sqlalchemy import select

    from burnin.history import tables as t

    run_id = str(report.get("run_id") or run_dir.name)
    started = parse_time(report.get("started_at"))
    if started is None:
        raise HistoryError(f"{run_dir}: the run has no start time; it cannot be placed in time")
    samples = {n["node"]: node_samples(run_dir, n["node"]) for n in report.get("nodes", [])}
    gpus = report.get("gpus", [])
    with engine.begin() as conn:
        if conn.execute(select(t.runs.c.run_id).where(t.runs.c.run_id == run_id)).first():
            return Ingested(run_id, False, 0)
        conn.execute(
            t.runs.insert().values(
                run_id=run_id,
                profile=report.get("profile"),
                status=report.get("status", "ERROR"),
                exit_code=int(report.get("exit_code", 4)),
                started_at=started,
                finished_at=parse_time(report.get("finished_at")),
                ingested_at=now or datetime.now(UTC),
                source=str(run_dir.resolve()),
            )
        )
        for node in report.get("nodes", []):
            conn.execute(
                t.nodes.insert().values(
                    run_id=run_id,
                    node=node["node"],
                    status=node.get("status", "ERROR"),
                    allreduce_busbw_gbps=node.get("allreduce_busbw_gbps"),
                )
            )
        for gpu in gpus:
            card_id = _card_id(conn, gpu)
            dev_samples = samples.get(gpu["node"], {}).get(gpu["index"], [])
            figures = card_figures(gpu.get("metrics", {}), dev_samples)
            row = conn.execute(
                t.card_runs.insert().values(
                    run_id=run_id,
                    card_id=card_id,
                    node=gpu["node"],
                    gpu_index=gpu["index"],
                    status=gpu.get("status", "ERROR"),
                    started_at=started,
                    metrics_json=json.dumps(gpu.get("metrics", {}), sort_keys=True),
                    **figures,
                )
            )
            card_run_id = row.inserted_primary_key[0]
            for v in gpu.get("verdicts", []):
                conn.execute(
                    t.verdicts.insert().values(
                        card_run_id=card_run_id,
                        check_id=v.get("check", "?"),
                        status=v.get("status", "ERROR"),
                        observed=json.dumps(v.get("observed")),
                        limit_value=json.dumps(v.get("limit")),
                        unit=v.get("unit") or "",
                        message=v.get("message") or "",
                        action=v.get("action") or "none",
                    )
                )
    return Ingested(run_id, True, len(gpus))


def _card_id(conn: Any, gpu: dict[str, Any]) -> int:
    from sqlalchemy import select

    from burnin.history import tables as t

    key = card_key(gpu)
    found = conn.execute(select(t.cards.c.id).where(t.cards.c.card_key == key)).first()
    if found:
        return int(found[0])
    row = conn.execute(
        t.cards.insert().values(
            card_key=key, serial=gpu.get("serial"), uuid=gpu.get("uuid"), sku=gpu.get("sku")
        )
    )
    return int(row.inserted_primary_key[0])
