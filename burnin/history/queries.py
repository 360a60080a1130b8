"""Read the history: runs, one card's life, fleet trends, lemons, two runs side by side.

Every function takes an Engine from :func:`burnin.history.db.connect` and returns plain data
(lists of dicts, :class:`~burnin.history.trends.Trend`), ordered deterministically so the same
history prints the same text on SQLite and on PostgreSQL. :func:`baseline_for` gives the
``regression`` check the past of each card in a run, as plain JSON for the run's manifest.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from burnin.history.figures import FIGURES
from burnin.history.trends import Trend, judge

if TYPE_CHECKING:
    from burnin.verdicts.regression import Thresholds

BAD = ("FAIL", "ERROR")


def _iso(value: Any) -> str | None:
    from burnin.history.keys import parse_time

    stamp = parse_time(value)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else None


def list_runs(engine: Any, limit: int = 50) -> list[dict[str, Any]]:
    from sqlalchemy import func, select

    from burnin.history import tables as t

    gpus = (
        select(t.card_runs.c.run_id, func.count().label("gpus"))
        .group_by(t.card_runs.c.run_id)
        .subquery()
    )
    nodes = (
        select(t.nodes.c.run_id, func.count().label("nodes")).group_by(t.nodes.c.run_id).subquery()
    )
    query = (
        select(t.runs, gpus.c.gpus, nodes.c.nodes)
        .outerjoin(gpus, gpus.c.run_id == t.runs.c.run_id)
        .outerjoin(nodes, nodes.c.run_id == t.runs.c.run_id)
        .order_by(t.runs.c.started_at.desc(), t.runs.c.run_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["started_at"] = _iso(row["started_at"])
        row["gpus"], row["nodes"] = row["gpus"] or 0, row["nodes"] or 0
    return rows


def _card_rows(engine: Any, where: Any = None) -> list[dict[str, Any]]:
    """Every card result (joined with its card), oldest first."""
    from sqlalchemy import select

    from burnin.history import tables as t

    query = select(
        t.card_runs, t.cards.c.serial, t.cards.c.uuid, t.cards.c.sku, t.cards.c.card_key
    ).join(t.cards, t.cards.c.id == t.card_runs.c.card_id)
    if where is not None:
        query = query.where(where)
    query = query.order_by(t.card_runs.c.started_at, t.card_runs.c.run_id, t.card_runs.c.node)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["started_at"] = _iso(row["started_at"])
    return rows


def _verdicts(engine: Any, card_run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    from sqlalchemy import select

    from burnin.history import tables as t

    out: dict[int, list[dict[str, Any]]] = {}
    if not card_run_ids:
        return out
    query = (
        select(t.verdicts)
        .where(t.verdicts.c.card_run_id.in_(card_run_ids))
        .order_by(t.verdicts.c.card_run_id, t.verdicts.c.id)
    )
    with engine.connect() as conn:
        for r in conn.execute(query):
            out.setdefault(r.card_run_id, []).append(dict(r._mapping))
    return out


def card_life(engine: Any, serial: str) -> list[dict[str, Any]]:
    """Every run of the card(s) with this serial, oldest first, each with its verdicts."""
    from burnin.history import tables as t

    rows = _card_rows(engine, t.cards.c.serial == serial)
    verdicts = _verdicts(engine, [r["id"] for r in rows])
    for row in rows:
        row["verdicts"] = verdicts.get(row["id"], [])
    return rows


def _by_card(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    cards: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        cards.setdefault(row["card_key"], []).append(row)
    return cards


def card_trends(rows: list[dict[str, Any]], thresholds: Thresholds) -> list[Trend]:
    """One card's trends: its latest run against every earlier one."""
    out = []
    for figure in FIGURES:
        points = [(r["started_at"], r[figure], r["run_id"]) for r in rows if r[figure] is not None]
        if len(points) >= 2:
            trend = judge(figure, points[:-1], points[-1], thresholds)
            if trend is not None:
                out.append(trend)
    return out


def fleet_trends(
    engine: Any, thresholds: Thresholds, since: datetime | None = None, flagged_only: bool = True
) -> list[tuple[dict[str, Any], Trend]]:
    """(latest row of the card, trend) for every card and figure, flagged ones by default."""
    from burnin.history import tables as t

    rows = _card_rows(engine, None if since is None else t.card_runs.c.started_at >= since)
    out = []
    cards = _by_card(rows)
    for key in sorted(cards):
        card_rows = cards[key]
        for trend in card_trends(card_rows, thresholds):
            if trend.flagged or not flagged_only:
                out.append((card_rows[-1], trend))
    return out


def lemons(engine: Any) -> list[dict[str, Any]]:
    """Serials that failed in more than one run, or failed again after an RMA verdict."""
    rows = _card_rows(engine)
    verdicts = _verdicts(engine, [r["id"] for r in rows if r["status"] in BAD])
    serials: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        serials.setdefault(row["serial"] or row["card_key"], []).append(row)
    out = []
    for serial in sorted(serials):
        life = serials[serial]
        failed = [r for r in life if r["status"] in BAD]
        rma = [r for r in failed if any(v["action"] == "rma" for v in verdicts.get(r["id"], []))]
        back = rma and any(r["started_at"] > rma[0]["started_at"] for r in failed)
        if len(failed) < 2 and not back:
            continue
        reasons = [f"failed in {len(failed)} of {len(life)} runs"]
        if back:
            reasons.append(f"RMA verdict in {rma[0]['run_id']}, failed again after it")
        out.append(
            {
                "serial": serial,
                "uuids": sorted({r["uuid"] or "" for r in life}),
                "runs": len(life),
                "failed": len(failed),
                "rma_returned": bool(back),
                "last_failed": failed[-1]["started_at"],
                "checks": sorted(
                    {
                        v["check_id"]
                        for r in failed
                        for v in verdicts.get(r["id"], [])
                        if v["status"] in BAD
                    }
                ),
                "reason": "; ".join(reasons),
            }
        )
    return out


def compare(engine: Any, run_a: str, run_b: str) -> list[dict[str, Any]]:
    """Cards present in either run, with their status and figures in A and in B."""
    from burnin.history import tables as t

    rows = _card_rows(engine, t.card_runs.c.run_id.in_([run_a, run_b]))
    found = {r["run_id"] for r in rows}
    missing = [r for r in (run_a, run_b) if r not in found]
    if missing:
        from burnin.history import HistoryError

        raise HistoryError(f"run(s) not in the history: {', '.join(missing)}")
    out = []
    for key, card in sorted(_by_card(rows).items()):
        a = next((r for r in card if r["run_id"] == run_a), None)
        b = next((r for r in card if r["run_id"] == run_b), None)
        out.append({"card_key": key, "serial": card[0]["serial"], "a": a, "b": b})
    return out


def baseline_for(engine: Any, run_id: str, keys: list[str], started_at: Any) -> dict[str, Any]:
    """The past of each card (by card key) before ``started_at``, for the regression check."""
    from burnin.history import tables as t
    from burnin.history.keys import parse_time

    stamp = parse_time(started_at)
    where = t.cards.c.card_key.in_(keys) & (t.card_runs.c.run_id != run_id)
    if stamp is not None:
        where = where & (t.card_runs.c.started_at < stamp)
    cards: dict[str, Any] = {}
    for key, rows in _by_card(_card_rows(engine, where)).items():
        passed = [r["started_at"] for r in rows if r["status"] == "PASS"]
        cards[key] = {
            "runs": [r["run_id"] for r in rows],
            "last_pass_at": passed[-1] if passed else None,
            "failed_runs": sum(r["status"] in BAD for r in rows),
            "figures": {
                f: [[r["started_at"], r[f], r["run_id"]] for r in rows if r[f] is not None]
                for f in FIGURES
            },
        }
    return cards
