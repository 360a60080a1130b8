"""HTML report: jinja2 with autoescape and StrictUndefined, templates shipped as package data.

Autoescape is what makes strings from untrusted gear (a seller's card can report any name or
serial) safe to show; StrictUndefined turns a template typo into an error in the tests instead
of a silently blank cell. The page is self-contained (inline CSS and SVG, no scripts, no
network), so it can be attached to a ticket or a purchase order as one file.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_PLOT_W, _PLOT_H = 240, 48


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("burnin.reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.globals["sparkline"] = sparkline
    return env


def render_html(context: dict[str, Any]) -> str:
    return environment().get_template("report.html.j2").render(r=context)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def sparkline(points: list[list[float]]) -> str:
    """SVG polyline points for [[x, y], ...] scaled into the plot box (pure, for the template)."""
    if len(points) < 2:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (_PLOT_W - 2) / ((x1 - x0) or 1)
    sy = (_PLOT_H - 4) / ((y1 - y0) or 1)
    return " ".join(f"{1 + (x - x0) * sx:.1f},{_PLOT_H - 2 - (y - y0) * sy:.1f}" for x, y in points)
