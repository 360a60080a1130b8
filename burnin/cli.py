"""The ``burnin`` command line: thin Click commands over the library.

Each command parses its options, calls one library function and maps ``BurninError`` to its
exit code (2 for bad input, 1 for a harness failure); verdicts map to 0/3/4 (docs/contracts.md). The
world (host, devices, telemetry, injected faults) comes from ``ctx.obj``, a
:class:`burnin.runtime.Runtime`, so tests drive every command through ``CliRunner``. torch and
pynvml are imported only inside the commands that stress or read hardware.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import burnin
from burnin.errors import EXIT_HARNESS, BurninError, exit_on_error
from burnin.launch import launch

log = logging.getLogger("burnin")


def init_logging(quiet: bool) -> None:
    """One stderr handler for the ``burnin`` logger; results go to stdout."""
    log.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("burnin: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def _runtime(ctx: click.Context) -> Any:
    from burnin.runtime import Runtime

    if ctx.obj is None:
        ctx.obj = Runtime()
    return ctx.obj


def _gpus(value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        return tuple(int(p) for p in value.split(",") if p.strip())
    except ValueError:
        raise click.BadParameter(f"expected GPU indices like 0,1,3, got {value!r}") from None


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The few options shared by ``run`` and ``plan``; new knobs go into config, not here."""
    options = [
        click.option(
            "--profile",
            "--config",
            "profile",
            default="quick",
            show_default=True,
            help="Profile name from configs/ (quick, acceptance, ...) or a TOML file.",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default=None,
            help="Where to run; auto = every visible GPU, else the CPU fallback.",
        ),
        click.option("--gpus", default=None, help="Only these GPU indices, e.g. 0,1."),
        click.option(
            "--expect-gpus",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="GPUs this node must show; fewer is a gpu-count FAIL (run.expect_gpus).",
        ),
        click.option(
            "--duration",
            default=None,
            help="Stress time per device: 90, 90s, 10m, 2h (overrides the profile).",
        ),
        click.option("--out", default=None, help="Directory for run directories [runs]."),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="SECTION.KEY=VALUE",
            help="Override one config value (repeatable).",
        ),
        click.option(
            "--simulate",
            default=None,
            metavar="SCENARIO.toml",
            help="Run a simulated fleet (nodes, SKU, faults) instead of this node's devices: "
            "the real code path, kernels on the CPU; see configs/scenarios/.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _load(
    profile: str,
    device: str | None,
    gpus: str | None,
    duration: str | None,
    out: str | None,
    overrides: tuple[str, ...],
    strict: bool = False,
    force: bool = False,
    expect_gpus: int | None = None,
) -> Any:
    from burnin.config import load_config, parse_duration

    flags: dict[str, Any] = {
        "run.device": device,
        "run.gpus": list(_gpus(gpus) or []) or None,
        "run.expect_gpus": expect_gpus,
        "run.duration_s": parse_duration(duration, "--duration") if duration else None,
        "run.out_dir": out,
        "run.strict": strict or None,
        "preflight.force": force or None,
    }
    return load_config(profile, overrides, flags)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(burnin.__version__, prog_name="burnin")
def cli() -> None:
    """burnin: burn in GPUs and certify them before they carry real work.

    Runs matmul stress on every GPU of this node (the CPU where there is none), samples
    telemetry, judges each card and writes report.html, report.json, junit.xml and
    burnin.prom into a new run directory. Exit codes: 0 pass, 1 harness error,
    2 bad input, 3 a card failed, 4 incomplete.
    """


@cli.command()
@run_options
@click.option("--strict", is_flag=True, help="Treat WARN as failure (exit 3).")
@click.option(
    "--quiet", is_flag=True, help="Only the summary; no progress messages, live view or lines."
)
@click.option(
    "--force",
    is_flag=True,
    help="Start even where the preflight refuses (a GPU busy with other processes, a "
    "required check that cannot run); what was found is recorded in the report.",
)
@click.option(
    "--history",
    "history_url",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="URL",
    help="Judge each card against its own past and add the run to this history database "
    "(sqlite:///FILE, postgresql+psycopg://...; bare --history: the default SQLite file).",
)
@click.option(
    "--on-fail",
    type=click.Choice(["drain", "taint"]),
    default=None,
    help="When a card fails: drain the Slurm node (scontrol) or taint the Kubernetes node "
    "burnin.io/health=failed:NoSchedule. Off by default.",
)
@click.option("--dry-run", is_flag=True, help="With --on-fail: print the command, do nothing.")
@click.option(
    "--node-name",
    default=None,
    help="This node's name in the run directory (nodes/NAME) [the host name].",
)
@click.option(
    "--prom-dir",
    type=click.Path(exists=True, file_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write burnin.prom into DIR (node_exporter's textfile directory), atomically.",
)
@click.pass_context
@exit_on_error
def run(
    ctx: click.Context,
    profile: str,
    device: str | None,
    gpus: str | None,
    expect_gpus: int | None,
    duration: str | None,
    out: str | None,
    overrides: tuple[str, ...],
    simulate: str | None,
    strict: bool,
    quiet: bool,
    force: bool,
    history_url: str | None,
    on_fail: str | None,
    dry_run: bool,
    prom_dir: Path | None,
    node_name: str | None,
) -> None:
    """Stress every device, judge it, write the reports; exit with the worst verdict.

    Ctrl-C or SIGTERM stops the stress, keeps every record and writes a partial report
    (exit 4).
    """
    from burnin.progress import live_view
    from burnin.reports.terminal import summary

    init_logging(quiet)
    config = _load(profile, device, gpus, duration, out, overrides, strict, force, expect_gpus)
    fleet = _fleet(ctx, simulate, node_name)
    with live_view(config.progress.interval_s, quiet):  # on stderr: stdout stays parseable
        outcome = fleet.execute(config, ["burnin", *sys.argv[1:]])
    history_error = None
    if history_url is not None:
        from burnin.history import HistoryError
        from burnin.runner import finish_with_history

        try:
            outcome = finish_with_history(outcome, history_url, config.run.strict)
        except HistoryError as exc:  # the run's own outputs are still written, then exit 2
            history_error = exc
    if prom_dir is not None:
        from burnin.reports import PROM_FILE
        from burnin.reports.prom import write_textfile

        write_textfile(outcome.context, prom_dir / PROM_FILE)
    if history_error is not None:
        raise history_error
    click.echo(summary(outcome.context))
    click.echo(f"# report: {outcome.run_dir / 'report.html'}")
    if on_fail:
        from burnin.history.actions import on_fail as act

        for action in act(outcome.context, on_fail, dry_run):
            done = "dry-run" if dry_run else ("done" if action.done else f"failed: {action.error}")
            click.echo(f"# on-fail {on_fail} {action.node} ({done}): {action.description}")
    sys.exit(outcome.exit_code)


def _fleet(ctx: click.Context, simulate: str | None, node_name: str | None = None) -> Any:
    """What the command acts on: this node's devices, or the ``--simulate`` scenario's fleet.

    The only place the CLI knows of the simulator; ``run`` and ``plan`` then act the same way
    on either (burnin/runner.py, ``Fleet``).
    """
    import dataclasses

    from burnin.errors import InputError
    from burnin.runner import LocalNode
    from burnin.store import safe_name

    if simulate:
        if node_name is not None:
            raise InputError(
                "--node-name names this node in a multi-node run; a --simulate fleet names its "
                "nodes itself: drop one of the two"
            )
        from burnin.sim.run import SimulatedFleet

        return SimulatedFleet(simulate)
    runtime = _runtime(ctx)
    if node_name is None:
        return LocalNode(runtime)
    if not node_name.strip():
        raise InputError("--node-name is empty: give the node's name, e.g. --node-name rack1-n03")
    # The store names the node's directory safe_name(host name), as for any host name.
    return LocalNode(dataclasses.replace(runtime, hostname=safe_name(node_name)))


@cli.command()
@run_options
@click.pass_context
@exit_on_error
def plan(
    ctx: click.Context,
    profile: str,
    device: str | None,
    gpus: str | None,
    expect_gpus: int | None,
    duration: str | None,
    out: str | None,
    overrides: tuple[str, ...],
    simulate: str | None,
) -> None:
    """Print what `burnin run` would do with these options; runs nothing."""
    config = _load(profile, device, gpus, duration, out, overrides, expect_gpus=expect_gpus)
    click.echo(_fleet(ctx, simulate).describe(config))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Treat WARN as failure (exit 3).")
@click.option("--quiet", is_flag=True, help="Do not print the summary.")
@click.option(
    "--prom-dir",
    type=click.Path(exists=True, file_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write burnin.prom into DIR (node_exporter's textfile directory), atomically.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With several directories: where the merged report goes [the first directory].",
)
@exit_on_error
def report(
    run_dirs: tuple[Path, ...],
    strict: bool,
    quiet: bool,
    prom_dir: Path | None,
    out_dir: Path | None,
) -> None:
    """Judge RUN_DIR again and re-render its reports (no torch, GPU or NVML needed).

    Several directories of one multi-node run (node directories copied off their nodes, or
    run directories each holding nodes/NODE) merge into one rack report.
    """
    from burnin.reports import judge_and_render
    from burnin.reports.terminal import summary
    from burnin.store import RunData, RunStore, merge_runs

    run_dir = out_dir or run_dirs[0]

    def load() -> RunData:
        if len(run_dirs) > 1 or out_dir is not None:
            merged = merge_runs(list(run_dirs), out=run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            return merged
        return RunStore(run_dir).load()  # read once: judged, then rendered

    context = judge_and_render(run_dir, strict=strict, prom_dir=prom_dir, load=load)
    if not quiet:
        click.echo(summary(context))
    click.echo(f"# report: {run_dir / 'report.html'}")
    sys.exit(context["exit_code"])


@cli.command()
@click.option(
    "--from",
    "dumps",
    multiple=True,
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Screen an nvidia-smi -q (text) or -q -x (XML) dump instead of this node; "
    "more FILEs may follow.",
)
@click.argument(
    "more",
    nargs=-1,
    metavar="[FILE]...",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True, help="Print burnin.inspect/1 JSON.")
@click.option("--profile", "--config", "profile", default=None, help="Profile or TOML file.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one config value, e.g. inspect.claimed_sku=H100-SXM5-80GB (repeatable).",
)
@click.option("--strict", is_flag=True, help="Treat WARN as failure (exit 3).")
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="With --from: write the lot's report.html and report.json into this directory.",
)
@click.pass_context
@exit_on_error
def inspect(
    ctx: click.Context,
    dumps: tuple[Path, ...],
    more: tuple[Path, ...],
    as_json: bool,
    profile: str | None,
    overrides: tuple[str, ...],
    strict: bool,
    out_dir: Path | None,
) -> None:
    """Screen cards without stress: identity, firmware, wear, ECC, limits; exit = worst verdict.

    Reads this node's GPUs through NVML, or with --from a seller's nvidia-smi dumps (no GPU,
    torch or NVML needed; the procurement profile unless --profile says otherwise), judged
    against [inspect] claimed_sku and against each other. Every file is judged: one that cannot
    be read is an ERROR entry (exit 4 unless a card FAILs).
    """
    import json

    from burnin import inspect as screen
    from burnin.config import load_config

    files = [*dumps, *more]
    if out_dir is not None and not files:
        raise click.UsageError("--out needs --from: it writes the report of a lot's dumps")
    if out_dir is not None and any((out_dir / n).exists() for n in ("report.html", "report.json")):
        raise click.UsageError(f"--out {out_dir} already holds a report; name a new directory")
    config = load_config(profile or ("procurement" if files else None), overrides)
    thresholds, claim = config.to_dict()["thresholds"], config.inspect.claimed_sku or None
    if files:
        result = screen.inspect_dumps(files, thresholds, claim, strict)
    else:
        result = screen.inspect_local(_runtime(ctx), thresholds, claim, strict)
    if out_dir is not None:
        from burnin.reports.lot import write_lot_report

        for path in write_lot_report(result.to_json(), out_dir):
            click.echo(f"# wrote {path}", err=True)
    out = json.dumps(result.to_json(), indent=2, default=str) if as_json else None
    click.echo(out or screen.format_table(result))
    sys.exit(result.exit_code)


@cli.command()
def kernels() -> None:
    """List the registered stress kernels and their config options."""
    import dataclasses
    import typing

    from burnin.kernels import registry

    for name in registry.names():
        cls = registry.get(name)
        click.echo(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        hints = typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            type_name = getattr(hints[f.name], "__name__", str(hints[f.name]))
            click.echo(f"    kernels.{name}.{f.name} = {f.default!r}  ({type_name})")


@cli.command()
def checks() -> None:
    """List the registered checks, what they judge and their thresholds (units, sources)."""
    from burnin.verdicts.registry import checks as registered_checks
    from burnin.verdicts.registry import describe

    for check in registered_checks().values():
        info = describe(check)
        click.echo(f"{info['id']}: {info['judges'] or '(no description)'}")
        cpu = "yes" if info["cpu"] else "no (cards only)"
        click.echo(f"    needs: {', '.join(info['needs'])}; CPU fallback: {cpu}")
        for t in info["thresholds"]:
            click.echo(f"    thresholds.{t['name']} = {t['default']!r} {t['unit']}  ({t['type']})")
            click.echo(f"        source: {t['source']}")


cli.add_command(launch)

from burnin.history.cli import history  # noqa: E402  (click only; SQLAlchemy loads on use)

cli.add_command(history)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except BurninError as exc:  # pragma: no cover - commands handle their own
        click.echo(f"burnin: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception:
        import traceback

        click.echo("burnin: internal error (a bug; please report it):", err=True)
        traceback.print_exc()
        sys.exit(EXIT_HARNESS)
