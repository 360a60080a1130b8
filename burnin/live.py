"""Drawing a run's progress: plain lines for logs, a rich table for a terminal.

Both take a :class:`burnin.progress.Snapshot` and nothing else, so a fixed snapshot renders
the same text every time. Plain lines start with ``# progress`` so a log reader can pick them
out and a consumer of stdout never sees them (they go to stderr). Table cells are
``rich.text.Text``, never markup, so a node or kernel name cannot inject styling. ``rich`` is
imported only here, and only when a terminal view is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:  # progress imports this module lazily; types only here
    from burnin.progress import Row, Snapshot


# Above this many seconds a duration reads in minutes (a 30-minute kernel as "12/30 min").
_MINUTES_FROM_S = 120.0


def duration(seconds: float) -> str:
    """A duration for people: seconds below two minutes, minutes above."""
    if seconds >= _MINUTES_FROM_S:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def kernel_progress(row: Row) -> str:
    """``12/30 min`` of the current kernel, or "" when no kernel has started."""
    if row.kernel_done_s is None or row.kernel_total_s is None:
        return ""
    total = row.kernel_total_s
    if total >= _MINUTES_FROM_S:
        return f"{row.kernel_done_s / 60:.0f}/{total / 60:.0f} min"
    return f"{row.kernel_done_s:.0f}/{total:.0f} s"


def _tflops(value: float) -> str:
    # A GPU's hundreds read whole; the CPU fallback's small matrices keep three digits.
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _cells(row: Row) -> list[str]:
    return [
        f"{row.temp_c:.0f} C" if row.temp_c is not None else "",
        f"{row.power_w:.0f} W" if row.power_w is not None else "",
        f"{_tflops(row.tflops)} TFLOP/s" if row.tflops is not None else "",
    ]


def plain_line(row: Row) -> str:
    parts = ["# progress", row.device]
    if row.state != "running":
        parts.append(row.state)
    if row.kernel != "-":
        parts += [row.kernel, kernel_progress(row)]
    parts += _cells(row)
    if row.status:
        parts.append(f"status {row.status}")
    return " ".join(p for p in parts if p)


def plain_lines(snap: Snapshot) -> list[str]:
    """One line per device, then the run's elapsed time and ETA."""
    lines = [plain_line(row) for row in snap.rows]
    lines.append(f"# progress run {duration(snap.elapsed_s)} elapsed, ETA {duration(snap.eta_s)}")
    return lines


HEADER = ("device", "state", "kernel", "progress", "temp", "power", "TFLOP/s", "status")


def table(snap: Snapshot) -> Any:
    """The live view: a ``rich.table.Table`` of every device, titled with the ETA."""
    from rich.table import Table
    from rich.text import Text

    title = f"burnin: {duration(snap.elapsed_s)} elapsed, ETA {duration(snap.eta_s)}"
    out = Table(title=Text(title), title_justify="left")
    for name in HEADER:
        right = name in {"progress", "temp", "power", "TFLOP/s"}
        justify: Literal["left", "right"] = "right" if right else "left"
        out.add_column(name, justify=justify)
    for row in snap.rows:
        temp, power, tflops = _cells(row)
        out.add_row(
            *(
                Text(cell)
                for cell in (
                    row.device,
                    row.state,
                    row.kernel,
                    kernel_progress(row),
                    temp,
                    power,
                    tflops.removesuffix(" TFLOP/s"),
                    row.status,
                )
            ),
            style="red" if row.status else None,
        )
    return out


def open_live(snap: Snapshot, stream: TextIO) -> Any:
    """A started ``rich.live.Live`` on ``stream``; the caller updates and stops it."""
    from rich.console import Console
    from rich.live import Live

    live = Live(
        table(snap),
        console=Console(file=stream),
        auto_refresh=False,
        transient=False,
        # stdout carries the machine-readable summary: never route it through the view.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    live.start(refresh=True)
    return _Refreshing(live)


class _Refreshing:
    """Redraws on every update: the reporter's tick is the refresh rate."""

    def __init__(self, live: Any) -> None:
        self._live = live

    def update(self, renderable: Any) -> None:
        self._live.update(renderable, refresh=True)

    def stop(self) -> None:
        self._live.stop()
