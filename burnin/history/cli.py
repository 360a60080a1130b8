"""``burnin history``: the history database from the command line (thin Click commands).

Each command opens the database named by ``--db`` (or ``$BURNIN_HISTORY``, else the SQLite file
in the user's data directory), calls one function of :mod:`burnin.history.queries` or
:mod:`burnin.history.ingest` and prints a table from :mod:`burnin.history.render`. A database
that cannot be opened is exit 2 with its host and the reason. SQLAlchemy is imported only when
a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from burnin.errors import exit_on_error


@click.group()
@click.option(
    "--db",
    "url",
    envvar="BURNIN_HISTORY",
    default=None,
    metavar="URL",
    help="History database: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB "
    "[$BURNIN_HISTORY, else a SQLite file in the user's data directory].",
)
@click.pass_context
def history(ctx: click.Context, url: str | None) -> None:
    """Runs and cards over time: ingest runs, a card's life, trends, lemons, comparisons."""
    ctx.meta["burnin.history.url"] = url


def _open(ctx: click.Context) -> Any:
    from burnin.history.db import connect

    engine = connect(ctx.meta.get("burnin.history.url"))
    ctx.call_on_close(engine.dispose)
    return engine


@history.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
@exit_on_error
def ingest(ctx: click.Context, run_dirs: tuple[Path, ...]) -> None:
    """Add finished run directories (one node or a whole rack each); a known run adds nothing."""
    from burnin.history.ingest import ingest_run

    engine = _open(ctx)
    for run_dir in run_dirs:
        done = ingest_run(engine, run_dir)
        what = f"added, {done.cards} card(s)" if done.added else "already in the history"
        click.echo(f"# {done.run_id}: {what}")


@history.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_context
@exit_on_error
def list_(ctx: click.Context, limit: int) -> None:
    """The runs in the history, newest first."""
    from burnin.history.queries import list_runs
    from burnin.history.render import runs_table

    click.echo(runs_table(list_runs(_open(ctx), limit)))


@history.command()
@click.option("--serial", required=True, help="The card's serial number.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the card's life with small plots to this HTML file.",
)
@click.pass_context
@exit_on_error
def show(ctx: click.Context, serial: str, html_file: Path | None) -> None:
    """One card's life: where it ran, every verdict, its figures over time."""
    from burnin.history.queries import card_life
    from burnin.history.render import life_html, life_table

    rows = card_life(_open(ctx), serial)
    if not rows:
        raise click.UsageError(f"serial {serial!r} is not in the history")
    click.echo(life_table(rows))
    if html_file is not None:
        html_file.write_text(life_html(serial, rows), encoding="utf-8")
        click.echo(f"# wrote {html_file}", err=True)


@history.command()
@click.option(
    "--since-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Only runs of the last N days (default: all).",
)
@click.option("--all", "show_all", is_flag=True, help="Every card's trend, flagged or not.")
@click.pass_context
@exit_on_error
def trends(ctx: click.Context, since_days: float | None, show_all: bool) -> None:
    """Cards whose figures moved against their own past beyond the thresholds."""
    from datetime import UTC, datetime, timedelta

    from burnin.history.queries import fleet_trends
    from burnin.history.render import trends_table
    from burnin.verdicts.regression import Thresholds

    since = datetime.now(UTC) - timedelta(days=since_days) if since_days else None
    found = fleet_trends(_open(ctx), Thresholds(), since, flagged_only=not show_all)
    click.echo(trends_table(found))


@history.command()
@click.pass_context
@exit_on_error
def lemons(ctx: click.Context) -> None:
    """Serials that failed more than once, or came back from an RMA and failed again."""
    from burnin.history.queries import lemons as find
    from burnin.history.render import lemons_table

    click.echo(lemons_table(find(_open(ctx))))


@history.command()
@click.argument("run_a")
@click.argument("run_b")
@click.pass_context
@exit_on_error
def compare(ctx: click.Context, run_a: str, run_b: str) -> None:
    """Two runs side by side, card by card."""
    from burnin.history.queries import compare as side_by_side
    from burnin.history.render import compare_table

    click.echo(compare_table(side_by_side(_open(ctx), run_a, run_b), run_a, run_b))
