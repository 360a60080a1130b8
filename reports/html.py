"""HTML report: jinja2 with autoescape and StrictUndefined, templates shipped as package data.

Autoescape is what makes strings from untrusted gear (a seller's card can report any name or
serial) safe to show; StrictUndefined turns a template typo into an error in the tests instead
of a silently blank cell. The page is self-contained (inline CSS and SVG, no scripts, no
network), so it can be attached to a ticket or a purchase order as one file.

The page opens on what a technician acts on: the run's verdict, counts per status and the pull
list (reports/fleet.py), then the fleet grid, the per-SKU distributions, and the flagged cards
in detail; PASS cards are one row each. Plots (reports/plots.py, matplotlib's SVG backend) are
drawn here, once per page: one per flagged card, one for node power, a few per SKU, so the
page's size and render time grow with the flagged cards, not with the fleet.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from burnin.reports.fleet import anchor, counts, distributions, grid, pull_list
from burnin.reports.labels import fmt, label

# Telemetry plots drawn at most (worst cards first): ~0.06 s and ~80 KB each (reports/plots.py),
# so a fleet where a whole hall fails still renders in seconds; the rest say where to look.
MAX_TIMELINES = 100


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("burnin.reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["metric"] = fmt
    env.filters["duration"] = _duration
    env.globals["label"] = label
    return env


def render_html(context: dict[str, Any]) -> str:
    return environment().get_template("report.html.j2").render(r=context, v=view(context))


def view(context: dict[str, Any]) -> dict[str, Any]:
    """What the page shows beyond the context: the first screen and the plots (SVG markup)."""
    from burnin.reports.plots import distribution_svg, node_power_svg, rack_busbw_svg, timeline_svg

    gpus = context["gpus"]
    dists = distributions(gpus, context["nodes"], context.get("thresholds") or {})
    for d in dists:
        for i, m in enumerate(d["metrics"]):
            name = f"dist-{_slug(d['sku'])}-{i}"
            m["svg"] = Markup(
                distribution_svg(m["key"], m["values"], m["outliers"], m["lines"], name)
            )
    timelines = {}
    figures: dict[Any, Any] = {}  # one figure per timeline layout, lent from card to card
    for g in gpus:
        if len(timelines) >= MAX_TIMELINES:
            break
        if g["status"] != "PASS" and g.get("telemetry"):
            title = f"{g['node']} gpu{g['index']} telemetry over time"
            name = f"tl-{_slug(g['node'])}-{g['index']}"
            timelines[anchor(g["node"], g["index"])] = Markup(
                timeline_svg(g["telemetry"], name, title, figures)
            )
    series = context["series"]["node_power_w"]
    starts = {p["node"]: [s["elapsed_s"] for s in p["device_starts"]] for p in context["power"]}
    power_svg = Markup(node_power_svg(series, starts, "power")) if series else None
    rack = context.get("rack_run") or {}
    rack_svg = Markup(rack_busbw_svg(rack["allreduce"], "rack")) if rack.get("allreduce") else None
    return {
        "counts": counts(gpus),
        "pull": pull_list(gpus),
        "grid": grid(gpus),
        "distributions": dists,
        "timelines": timelines,
        "power_svg": power_svg,
        "rack_svg": rack_svg,
        "flagged": [g for g in gpus if g["status"] != "PASS"],
        "passed": [g for g in gpus if g["status"] == "PASS"],
        "title": f"{context.get('profile') or 'burnin'} report",
        "max_timelines": MAX_TIMELINES,
    }


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(text))[:40]


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _duration(seconds: Any) -> str:
    """``seconds`` as a person reads a run's length: ``42 s``, ``14 min 5 s``, ``2 h 3 min``."""
    if not isinstance(seconds, int | float):
        return "n/a"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.3g} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
