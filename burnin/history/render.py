"""Text tables and a small HTML page (inline SVG plot) for the ``burnin history`` commands.

Plain functions from the rows :mod:`burnin.history.queries` returns to strings; figures are
printed with fixed precision so the same history prints the same bytes on every database.
Every string that came from a device or a file is escaped in the HTML.
"""

from __future__ import annotations

import html
from typing import Any

from burnin.history.trends import RULES, Trend


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _clean(text: Any) -> str:
    """A cell for the terminal: a device's string may hold control characters; show them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _table(header: list[str], rows: list[list[str]]) -> str:
    rows = [[_clean(c) for c in r] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(["# " + lines[0], *("  " + line for line in lines[1:])])


def runs_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "# no runs in the history"
    body = [
        [
            r["run_id"],
            r["started_at"] or "-",
            r["profile"] or "-",
            r["status"],
            str(r["nodes"]),
            str(r["gpus"]),
        ]
        for r in rows
    ]
    return _table(["run", "started", "profile", "status", "nodes", "gpus"], body)


def life_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        bad = [
            f"{v['check_id']}:{v['status']}"
            for v in r["verdicts"]
            if v["status"] in ("WARN", "FAIL", "ERROR")
        ]
        body.append(
            [
                r["started_at"],
                r["run_id"],
                f"{r['node']}/gpu{r['gpu_index']}",
                r["status"],
                _f(r["matmul_tflops"], 1),
                _f(r["membw_gbps"], 1),
                _f(r["busbw_gbps"], 1),
                _f(r["temp_c_per_kw"], 1),
                _f(r["ecc_sbe_per_h"], 1),
                ",".join(bad) or "-",
            ]
        )
    header = [
        "started",
        "run",
        "where",
        "status",
        "TFLOP/s",
        "GB/s",
        "busbw GB/s",
        "C/kW",
        "SBE/h",
        "verdicts",
    ]
    return _table(header, body)


def trends_table(found: list[tuple[dict[str, Any], Trend]]) -> str:
    if not found:
        return "# no card moved against its own past beyond the thresholds"
    body = []
    for row, t in found:
        change = f"{t.change:+.1f}/h" if t.figure == "ecc_sbe_per_h" else f"{t.change * 100:+.1f}%"
        body.append(
            [
                row["serial"] or "-",
                f"{row['node']}/gpu{row['gpu_index']}",
                t.figure,
                f"{t.baseline:.2f}",
                f"{t.latest:.2f}",
                change,
                f"{t.slope_per_day:+.3f}",
                ",".join(t.runs),
            ]
        )
    header = ["serial", "where", "figure", "baseline", "latest", "change", "slope/day", "runs"]
    return _table(header, body)


def lemons_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "# no serial failed more than once"
    body = [
        [
            r["serial"],
            str(r["runs"]),
            str(r["failed"]),
            "yes" if r["rma_returned"] else "no",
            r["last_failed"],
            ",".join(r["checks"]) or "-",
            r["reason"],
        ]
        for r in rows
    ]
    header = ["serial", "runs", "failed", "rma-returned", "last-failed", "checks", "why"]
    return _table(header, body)


def compare_table(rows: list[dict[str, Any]], run_a: str, run_b: str) -> str:
    body = []
    for r in rows:
        a, b = r["a"] or {}, r["b"] or {}
        ta, tb = a.get("matmul_tflops"), b.get("matmul_tflops")
        delta = f"{(tb - ta) / ta * 100:+.1f}%" if ta and tb else "-"
        body.append(
            [
                r["serial"] or r["card_key"],
                a.get("status", "absent"),
                b.get("status", "absent"),
                _f(ta, 1),
                _f(tb, 1),
                delta,
                _f(a.get("membw_gbps"), 1),
                _f(b.get("membw_gbps"), 1),
            ]
        )
    header = [
        "serial",
        f"A {run_a}",
        f"B {run_b}",
        "A TFLOP/s",
        "B TFLOP/s",
        "change",
        "A GB/s",
        "B GB/s",
    ]
    return _table(header, body)


def _svg(points: list[tuple[str, float]], title: str, unit: str) -> str:
    width, height, pad = 360, 120, 24
    if not points:
        return ""
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    n = len(points)
    coords = [
        (
            pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5),
            height - pad - (height - 2 * pad) * (v - lo) / span,
        )
        for i, (_, v) in enumerate(points)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{html.escape(s)}: {v:.4g} '
        f"{html.escape(unit)}</title></circle>"
        for (x, y), (s, v) in zip(coords, points, strict=True)
    )
    return (
        f"<figure><figcaption>{html.escape(title)} ({html.escape(unit)}): "
        f"{lo:.4g} .. {hi:.4g}</figcaption>"
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{path}"/>{dots}</svg>'
        "</figure>"
    )


def life_html(serial: str, rows: list[dict[str, Any]]) -> str:
    plots = []
    for figure, (_, _, unit, words) in RULES.items():
        points = [(r["started_at"], r[figure]) for r in rows if r[figure] is not None]
        plots.append(_svg(points, words, unit))
    table = html.escape(life_table(rows))
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>burnin history: {html.escape(serial)}</title></head><body>"
        f"<h1>Card {html.escape(serial)}</h1>{''.join(plots)}<pre>{table}</pre></body></html>\n"
    )
