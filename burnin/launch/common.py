"""What both launchers share: the rendezvous port, the checks every typed value goes through
before it reaches a shell or a manifest, and the command every node runs."""

from __future__ import annotations

import re

from burnin.errors import InputError

# The c10d rendezvous's default port (DEFAULT_PORT in
# torch/distributed/elastic/rendezvous/c10d_rendezvous_backend.py).
DEFAULT_PORT = 29400
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(option: str, value: str) -> str:
    """A free-form value (a profile name or path) that will be quoted before use.

    Raises:
        InputError: control characters (a newline would end a script line or a comment) or a
            leading ``-`` (the command it is passed to would read it as an option).
    """
    if not value or _CONTROL.search(value) or value.startswith("-"):
        raise InputError(
            f"{option} {value!r}: expected a non-empty value without control characters that "
            "does not start with '-'"
        )
    return value


def check_pattern(option: str, value: str, pattern: str, what: str) -> str:
    """A value that must match ``pattern`` in full; ``what`` describes the expected form."""
    if not re.fullmatch(pattern, value):
        raise InputError(f"{option} {value!r}: expected {what}")
    return value


def node_command(
    nodes: int, endpoint: str, rdzv_id: str, profile: str, out: str, gpus_per_node: int
) -> list[str]:
    """The command every node runs, one token per argument.

    ``--expect-gpus`` makes a node that shows fewer GPUs than the job asked for FAIL its
    gpu-count check instead of passing on the GPUs it has.
    """
    return [
        "torchrun",
        "--nnodes",
        str(nodes),
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        endpoint,
        "--rdzv-id",
        rdzv_id,
        "--no-python",
        "burnin",
        "run",
        "--profile",
        profile,
        "--out",
        out,
        "--expect-gpus",
        str(gpus_per_node),
    ]
