"""Report plots as inline SVG strings drawn with matplotlib: axes, units, ticks and limit lines.

Why matplotlib (and not hand-built SVG or pygal): a technician needs real axes (ticks at round
values, units, a time axis in seconds), limit lines labelled in place and shaded workload phases,
and matplotlib's SVG backend gives all of that without a raster step (no Agg, no images) and
without any script in the page; pygal's output needs its JavaScript for tooltips and reads
poorly without it. ``svg.fonttype = none`` writes text as ``<text>`` (selectable, searchable,
small) instead of glyph paths; a fixed ``svg.hashsalt``, no metadata and per-plot id prefixes
keep the output byte-identical between runs and let many plots share one HTML page. matplotlib
is imported inside the functions only, so ``burnin --help`` never pays for it. Measured on the
2-core VM shared with other jobs (900 samples a card): a 5-panel device timeline ≈ 0.1 s
(≈ 0.06 s on a figure lent from the previous card, most of the rest being matplotlib's ticks)
and ≈ 80 KB, a distribution of 2,048 cards ≈ 0.04 s and ≈ 15 KB, node power ≈ 30 KB.
"""

from __future__ import annotations

import functools
import html
import io
import re
from collections.abc import Callable, Sequence
from typing import Any

from burnin.reports.labels import label

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "burnin",
    "font.family": "sans-serif",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.grid": True,
    "grid.color": "#e4e6ea",
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9aa0a6",
    "lines.linewidth": 1.0,
    "path.simplify": True,
    "path.simplify_threshold": 0.5,
}
LINE, LIMIT, PHASE, BAD, WARN_C = "#1a73e8", "#d93025", "#e8eefc", "#d93025", "#e8a500"
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|xlink:href="#|href="#)([^)"]+)')


def _styled(draw: Callable[..., str]) -> Callable[..., str]:
    """Run ``draw`` under the report's style without touching matplotlib's global settings."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        from matplotlib import rc_context

        with rc_context(_RC):
            return draw(*args, **kwargs)

    return wrapper


def _figure(
    width_in: float, ratios: Sequence[float], panel_in: float = 1.05
) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    height = 0.35 + panel_in * sum(ratios)
    fig = Figure(figsize=(width_in, height), dpi=72)
    grid = {"height_ratios": list(ratios), "hspace": 0.25}
    axes = fig.subplots(len(ratios), 1, sharex=True, squeeze=False, gridspec_kw=grid)[:, 0]
    fig.subplots_adjust(left=0.12, right=0.97, top=1 - 0.2 / height, bottom=0.33 / height)
    return fig, list(axes)


def svg(fig: Any, name: str, title: str) -> str:
    """``fig`` as an inline ``<svg>``: no XML prolog or metadata, ids prefixed with ``name``."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = _ID.sub(lambda m: f'id="{name}-{m.group(1)}"', text)
    text = _REF.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text)
    aria = html.escape(title, quote=True)
    return text.replace("<svg ", f'<svg class="plot" role="img" aria-label="{aria}" ', 1)


def _cleared(axes: list[Any]) -> None:
    """``axes`` as :func:`_figure` made them, with what one card's plot drew taken away.

    What stays is what every plot of the same layout shares: the figure, its axes, their
    spines, grids, label positions and tick artists (building those is most of the cost of
    one plot). Data limits and autoscaling start afresh, so the next card's axes are its own.
    """
    for ax in axes:
        for artist in [*ax.lines, *ax.patches, *ax.collections, *ax.texts]:
            artist.remove()
        ax.relim()
        ax.set_autoscale_on(True)


@_styled
def timeline_svg(
    t: dict[str, Any], name: str, title: str, figures: dict[Any, Any] | None = None
) -> str:
    """A device's telemetry (reports/timeline.py) as stacked panels on one time axis.

    ``figures`` (a dict the caller keeps for one report) lends the figure of one layout (the
    number of panels and of clock-event rows) from one card's plot to the next, cleared in
    between; the same timeline gives the same SVG with it or without.
    """
    plots, throttle = t["plots"], t["throttle"]
    ratios = [1.0] * len(plots) + ([0.3 + 0.22 * len(throttle)] if throttle else [])
    layout = tuple(ratios or [1.0])
    if figures is not None and layout in figures:
        fig, axes = figures[layout]
        _cleared(axes)
    else:
        fig, axes = _figure(7.4, list(layout), panel_in=0.72)
        if figures is not None:
            figures[layout] = (fig, axes)
    for ax, p in zip(axes, plots, strict=False):
        xs = [x for x, _ in p["points"]]
        ys = [y for _, y in p["points"]]
        ax.plot(xs, ys, color=LINE, marker="o" if len(xs) == 1 else None, ms=3)
        ax.set_ylabel(f"{p['label']}\n({p['unit']})")
        limit = t["limits"].get(p["key"])
        if limit is not None:
            words = "slowdown" if p["key"] == "temp_c" else "power limit"
            ax.axhline(limit, color=LIMIT, ls="--", lw=0.8)
            ax.annotate(
                f"{words} {limit:g} {p['unit']}",
                (1, limit),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=6.5,
                color=LIMIT,
            )
            ax.set_ylim(top=max(limit, max(ys)) * 1.06)
    for ax in axes:
        for ph in t["phases"]:
            ax.axvspan(ph["start_s"], ph["end_s"], color=PHASE, zorder=0, lw=0)
    top = axes[0]
    for ph in t["phases"]:
        top.text(
            (ph["start_s"] + ph["end_s"]) / 2,
            1.02,
            ph["kernel"],
            transform=top.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=6.5,
        )
    if throttle:
        band = axes[-1]
        for i, r in enumerate(throttle):
            bars = [(a, max(b - a, t["duration_s"] / 400)) for a, b in r["ranges"]]
            color = BAD if r["reason"].startswith("hw_") else WARN_C
            band.broken_barh(bars, (i - 0.35, 0.7), color=color)
        band.set_yticks(range(len(throttle)), [r["reason"] for r in throttle])
        band.set_ylim(-0.6, len(throttle) - 0.4)
        band.grid(False, axis="y")
        band.set_ylabel("clock events")
    axes[-1].set_xlim(0, t["duration_s"] or 1.0)
    axes[-1].set_xlabel("time since the run started (s)")
    return svg(fig, name, title)


@_styled
def node_power_svg(
    series: dict[str, list[list[float]]],
    starts: dict[str, list[float]],
    name: str,
    limit_w: float | None = None,
) -> str:
    """Each node's total power over time with its device starts (the ramp) as ticks.

    Up to 8 nodes get one line each; a larger fleet gets the band from the lowest to the
    highest node at each moment, the median node, and the node with the highest peak, which
    keeps the plot readable and its size flat in the node count.
    """
    import numpy as np

    fig, (ax,) = _figure(7.4, [1.6])
    if len(series) <= 8:
        for i, (node, points) in enumerate(sorted(series.items())):
            line = ax.plot([p[0] for p in points], [p[1] for p in points], label=node)[0]
            ticks = starts.get(node, [])
            if ticks:
                y = 0.02 + 0.03 * i
                ax.plot(
                    ticks,
                    [y] * len(ticks),
                    "|",
                    color=line.get_color(),
                    ms=6,
                    transform=ax.get_xaxis_transform(),
                )
        ax.legend(loc="lower right", fontsize=6.5, ncol=min(4, len(series)), frameon=False)
    else:
        end = max(p[-1][0] for p in series.values())
        grid = np.linspace(0.0, end, 300)
        lines = np.array(
            [
                np.interp(grid, [p[0] for p in pts], [p[1] for p in pts], left=np.nan, right=np.nan)
                for pts in series.values()
            ]
        )
        ax.fill_between(
            grid,
            np.nanmin(lines, 0),
            np.nanmax(lines, 0),
            color="#c6dafc",
            lw=0,
            label=f"lowest to highest of {len(series)} nodes",
        )
        ax.plot(grid, np.nanmedian(lines, 0), color=LINE, label="median node")
        peak = max(series, key=lambda n: max(p[1] for p in series[n]))
        ax.plot(
            [p[0] for p in series[peak]],
            [p[1] for p in series[peak]],
            color="#7b2cbf",
            lw=0.8,
            label=f"highest peak: {peak}",
        )
        ax.legend(loc="lower right", fontsize=6.5, frameon=False)
    if limit_w:
        ax.axhline(limit_w, color=LIMIT, ls="--", lw=0.8)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("node power (W)")
    ax.set_xlabel("time since the run started (s); ticks: device starts")
    return svg(fig, name, "node power over time")


@_styled
def distribution_svg(
    key: str,
    values: Sequence[float],
    outliers: Sequence[tuple[str, float]],
    lines: Sequence[tuple[float, str]],
    name: str,
) -> str:
    """A histogram of one metric over one SKU's cards, outliers marked, thresholds drawn.

    ``outliers`` are (card label, value) pairs drawn as red marks with their labels (the first
    six); ``lines`` are (value, words) pairs drawn as dashed vertical lines.
    """
    spec = label(key)
    scale = 100.0 if spec.fmt == "%" else 1.0
    unit = "%" if spec.fmt == "%" else spec.unit
    fig, (ax,) = _figure(3.7, [1.25])
    data = [v * scale for v in values]
    shown = [v * scale for v, _ in lines] + data
    lo, hi = min(shown), max(shown)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    ax.hist(
        data,
        bins=min(30, max(5, len(data) // 4)),
        range=(lo - pad, hi + pad),
        color="#9ab8f0",
        lw=0,
    )
    for value, words in lines:
        ax.axvline(value * scale, color=LIMIT, ls="--", lw=0.8)
        ax.annotate(
            words,
            (value * scale, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            ha="right",
            va="top",
            fontsize=6,
            color=LIMIT,
        )
    for i, (card, value) in enumerate(outliers):
        ax.plot(
            [value * scale],
            [0],
            marker="v",
            color=BAD,
            ms=5,
            clip_on=False,
            transform=ax.get_xaxis_transform(),
        )
        if i < 6:
            ax.annotate(
                card,
                (value * scale, 0.06 + 0.1 * (i % 4)),
                fontsize=6,
                color=BAD,
                xycoords=("data", "axes fraction"),
                ha="center",
            )
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylabel("cards")
    ax.set_xlabel(f"{spec.name} ({unit})" if unit else spec.name)
    ax.grid(False, axis="x")
    return svg(fig, name, f"distribution of {spec.name}")


@_styled
def rack_busbw_svg(sizes: list[dict[str, Any]], name: str) -> str:
    """The rack's cross-node all-reduce busbw against the message size (log2 size axis)."""
    points = [(s["size_bytes"], s["busbw_gbps"]) for s in sizes if s.get("busbw_gbps") is not None]
    fig, (ax,) = _figure(7.4, [1.4])
    ax.plot([p[0] for p in points], [p[1] for p in points], color=LINE, marker="o", ms=3)
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("busbw (GB/s)")
    ax.set_xlabel("message size (bytes)")
    return svg(fig, name, "rack all-reduce busbw against message size")
