"""The sbatch script behind ``burnin launch slurm``, and its submission.

The script asks for whole nodes (one task per node, ``--exclusive``, the GPUs per node) and runs
one ``torchrun`` per node through ``srun``; torchrun's c10d rendezvous is hosted on the first
host of the allocation (``scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1``). Inside,
torchrun sets ``GROUP_RANK`` and ``GROUP_WORLD_SIZE`` and srun sets ``SLURM_NODEID``, from which
``burnin.plan`` staggers the node starts. Each node writes ``nodes/<host name>/`` under a run
directory on shared storage. Values in ``#SBATCH`` lines are read by sbatch, not a shell, so they
must match a strict pattern; every value in a shell line is quoted with ``shlex.quote``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from burnin.errors import BurninError, InputError
from burnin.launch.common import DEFAULT_PORT, check_pattern, check_text, node_command

# Job names and partitions: letters, digits and _ . - (partitions may be a comma list).
_JOB_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
_PARTITION = r"[A-Za-z0-9_][A-Za-z0-9_.-]*(,[A-Za-z0-9_][A-Za-z0-9_.-]*)*"
# sbatch --time forms (sbatch(1)): M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, and UNLIMITED/INFINITE.
_TIME = r"[0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}|UNLIMITED|INFINITE"
# Where the runs go without --out: the directory sbatch was run from, which Slurm already expects
# every node to see (each task starts there).
DEFAULT_OUT = "$SLURM_SUBMIT_DIR/burnin-runs"


@dataclass(frozen=True, kw_only=True)
class SlurmJob:
    nodes: int
    gpus_per_node: int
    profile: str = "acceptance"
    name: str = "burnin"
    port: int = DEFAULT_PORT
    out: str | None = None
    partition: str | None = None
    time_limit: str | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise InputError(f"--nodes {self.nodes}: a job needs at least one node")
        if self.gpus_per_node < 1:
            raise InputError(f"--gpus-per-node {self.gpus_per_node}: expected at least 1")
        if not 1 <= self.port <= 65535:
            raise InputError(f"--port {self.port}: expected a TCP port, 1 to 65535")
        check_text("--profile", self.profile)
        check_pattern("--name", self.name, _JOB_NAME, "a Slurm job name (letters, digits, _ . -)")
        if self.out is not None:
            check_text("--out", self.out)
        if self.partition is not None:
            check_pattern(
                "--partition",
                self.partition,
                _PARTITION,
                "partition name(s): letters, digits, _ . -",
            )
        if self.time_limit is not None:
            check_pattern(
                "--time", self.time_limit, _TIME, "a Slurm time limit like 90, 2:00:00 or 1-12"
            )


def render_sbatch(job: SlurmJob) -> str:
    """The sbatch script for ``job``; every user value in a shell line is quoted."""
    directives = [
        f"--job-name={job.name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
        f"--gpus-per-node={job.gpus_per_node}",
        "--exclusive",
        *([f"--partition={job.partition}"] if job.partition else []),
        *([f"--time={job.time_limit}"] if job.time_limit else []),
        "--output=%x-%j.out",
    ]
    out = shlex.quote(job.out) if job.out is not None else f'"{DEFAULT_OUT}"'
    command = node_command(
        job.nodes, "@ENDPOINT@", "@RDZV_ID@", job.profile, "@OUT@", job.gpus_per_node
    )
    # The rendezvous endpoint, run id and run directory are shell expansions, left unquoted
    # inside double quotes; every other token is quoted.
    expansions = {
        "@ENDPOINT@": '"$RDZV_HOST:$RDZV_PORT"',
        "@RDZV_ID@": '"$SLURM_JOB_ID"',
        "@OUT@": '"$OUT"',
    }
    words = [expansions.get(t, shlex.quote(t)) for t in command]
    lines = [
        "#!/bin/bash",
        f"# burnin rack burn-in: {job.nodes} node(s) x {job.gpus_per_node} GPU(s).",
        "# Written by `burnin launch slurm`; submit it with `sbatch FILE`.",
        *(f"#SBATCH {d}" for d in directives),
        "set -eu",
        "",
        "# One run directory for the whole job: each node writes OUT/<run-id>/nodes/<host name>/,",
        "# so OUT must be on storage every node mounts at the same path. Without --out it is",
        "# burnin-runs in the directory sbatch was run from.",
        f"OUT={out}",
        "# torchrun's c10d rendezvous is hosted on the first node of the allocation.",
        'RDZV_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        f"RDZV_PORT={job.port}",
        'mkdir -p "$OUT"',
        "",
        "# One task per node; burnin starts one worker per GPU. Node r starts r x",
        "# ramp.node_offset_s after node 0 (see `burnin plan`), so the rack's draw ramps up.",
        "# torchrun reports any failed node as exit 1: the verdicts are in the run directory.",
        f"srun --nodes={job.nodes} --ntasks-per-node=1 \\",
        "  " + " ".join(words[:11]) + " \\",
        "  " + " ".join(words[11:]),
    ]
    return "\n".join(lines) + "\n"


def submit_script(script: str, run: Callable[[Sequence[str], str], Any]) -> str:
    """Hand ``script`` to ``sbatch --parsable`` on stdin and return the job id.

    Raises:
        BurninError: sbatch is missing, refused the script, or printed no job id.
    """
    try:
        done = run(["sbatch", "--parsable"], script)
    except FileNotFoundError:
        raise BurninError(
            "--submit: sbatch was not found on PATH (is this a Slurm host?)"
        ) from None
    stdout, stderr = str(done.stdout or ""), str(done.stderr or "")
    if done.returncode != 0:
        raise BurninError(
            f"--submit: sbatch exited with {done.returncode}: {stderr.strip() or stdout.strip()}"
        )
    # --parsable prints "jobid" or "jobid;cluster".
    job_id = stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise BurninError(f"--submit: sbatch printed no job id: {stdout.strip()!r}")
    return job_id
