"""``burnin launch``: job files that run burnin across the nodes of a rack with the engines
operators already run, Slurm (an sbatch script) and Kubernetes (an Indexed Job), never a cluster
runtime of its own. Every node runs the same command, ``torchrun --nnodes N --nproc-per-node 1
--rdzv-backend c10d --rdzv-endpoint HOST:PORT --no-python burnin run --out SHARED_DIR``: torchrun
meets the other nodes at the rendezvous on the job's first node and gives each node its rank,
which ``burnin.plan`` turns into a staggered start, and every node writes its own ``nodes/<node>/``
under one run directory on shared storage. The commands only print (or, with ``--submit`` /
``--apply``, hand over) what they generate; the scheduler and cluster clients are injected through
``ctx.obj`` (a :class:`Launchers`), so tests drive them with fakes. Every value a user types is
checked here before it reaches a shell or a manifest: one that cannot be made safe is refused with
exit 2, naming its option.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from burnin.errors import exit_on_error
from burnin.launch.common import DEFAULT_PORT


def run_command(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
    """Run a scheduler client (``sbatch``) with ``stdin``; output captured as text."""
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)


def load_k8s_apis() -> tuple[Any, Any]:
    from burnin.launch.k8s import load_apis

    return load_apis()


@dataclass(frozen=True)
class Launchers:
    """The outside world of ``burnin launch``: how to run sbatch and reach a cluster."""

    run_command: Callable[[Sequence[str], str], Any] = run_command
    # Returns (CoreV1Api, BatchV1Api).
    k8s_apis: Callable[[], tuple[Any, Any]] = load_k8s_apis


def _launchers(ctx: click.Context) -> Launchers:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Launchers) else Launchers()


def _shape(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options both launchers share: the job's shape and what each node runs."""
    options = [
        click.option(
            "--nodes", type=click.IntRange(min=1, max=100_000), required=True, help="Nodes."
        ),
        click.option(
            "--gpus-per-node",
            type=click.IntRange(min=1, max=64),
            required=True,
            help="GPUs each node has and the job requests; fewer seen is a gpu-count FAIL.",
        ),
        click.option(
            "--profile",
            default="acceptance",
            show_default=True,
            help="burnin profile; keep one with a ramp (ramp.step_s > 0) so nodes start staggered.",
        ),
        click.option("--name", default="burnin", show_default=True, help="Job (and Service) name."),
        click.option(
            "--port",
            type=click.IntRange(min=1, max=65535),
            default=DEFAULT_PORT,
            show_default=True,
            help="Rendezvous port on the first node.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group()
def launch() -> None:
    """Print a job that burns in a whole rack: one burnin per node, started by torchrun."""


@launch.command()
@_shape
@click.option(
    "--out",
    default=None,
    help="Run directory on storage every node mounts at the same path "
    "[$SLURM_SUBMIT_DIR/burnin-runs].",
)
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_limit", default=None, help="Slurm time limit, e.g. 2:00:00.")
@click.option("--submit", is_flag=True, help="Hand the script to sbatch; print the job id.")
@click.pass_context
@exit_on_error
def slurm(ctx: click.Context, submit: bool, **options: Any) -> None:
    """Print an sbatch script: one task per node, srun + torchrun, rendezvous on the first node."""
    from burnin.launch.slurm import SlurmJob, render_sbatch, submit_script

    script = render_sbatch(SlurmJob(**options))
    if not submit:
        click.echo(script, nl=False)
        return
    click.echo(submit_script(script, _launchers(ctx).run_command))


@launch.command()
@_shape
@click.option("--image", default=None, help="Container image with burnin [burnin:VERSION].")
@click.option("--namespace", default="default", show_default=True, help="Namespace.")
@click.option(
    "--pvc",
    default="burnin-runs",
    show_default=True,
    help="ReadWriteMany PersistentVolumeClaim holding the run directories.",
)
@click.option(
    "--out",
    default="/burnin-runs",
    show_default=True,
    help="Where the claim is mounted in each pod (burnin run --out).",
)
@click.option("--apply", "apply_", is_flag=True, help="Create the Service and Job now.")
@click.pass_context
@exit_on_error
def k8s(ctx: click.Context, apply_: bool, **options: Any) -> None:
    """Print YAML: a headless Service for the rendezvous and an Indexed Job, one pod per node."""
    from burnin.launch.k8s import K8sJob, apply, build_manifests, render_yaml

    documents = build_manifests(K8sJob(**options))
    if not apply_:
        click.echo(render_yaml(documents), nl=False)
        return
    core, batch = _launchers(ctx).k8s_apis()
    for line in apply(documents, core, batch):
        click.echo(line)
