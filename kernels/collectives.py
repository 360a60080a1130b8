"""Pure parts of collectives: nccl-tests' bandwidth formulas, pair schedules, patterns, the node's
plan for a shared kernel and the environment a node-local process group needs.

algbw = S / t and busbw = algbw · 2(n−1)/n with S in bytes and GB = 1e9 B (nccl-tests
doc/PERFORMANCE.md). Kept apart from the kernels so the verdicts and the report can use the same
formulas without torch.distributed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_MOD, _STRIDE, _OFFSET = 13, 7, 6  # inputs in [-6, 6]: |sum| <= 6n, exact in fp32
# Pairs below this share of the typical pair are measured again before the table is kept; the
# same 0.9 as the slow-link warning (nccl-tests flags "Avg bus bandwidth" below 0.9 × its floor).
CONFIRM_RATIO = 0.9
Pair = tuple[int, int]


def bus_factor(ranks: int) -> float:
    """nccl-tests' all-reduce bus factor 2(n−1)/n (doc/PERFORMANCE.md)."""
    return 2.0 * (ranks - 1) / ranks if ranks > 0 else 0.0


def bandwidth_gbps(size_bytes: int, seconds: float, ranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9 B) for one all-reduce of ``size_bytes`` taking ``seconds``."""
    algbw = size_bytes / seconds / 1e9 if seconds > 0 else 0.0
    return algbw, algbw * bus_factor(ranks)


def backend_for(device_type: str) -> str:
    """The one place that picks the torch.distributed backend: NCCL on GPUs, gloo elsewhere."""
    return "nccl" if device_type == "cuda" else "gloo"


def pair_rounds(n: int) -> list[list[tuple[int, int]]]:
    """Every pair of ``n`` ranks once, in rounds where no rank appears twice (circle method)."""
    slots: list[int | None] = [*range(n), *([None] if n % 2 else [])]
    m = len(slots)
    rounds = []
    for _ in range(m - 1):
        rnd = []
        for i in range(m // 2):
            a, b = slots[i], slots[m - 1 - i]
            if a is not None and b is not None:
                rnd.append((min(a, b), max(a, b)))
        rounds.append(sorted(rnd))
        slots = [slots[0], slots[-1], *slots[1:-1]]
    return [r for r in rounds if r]


def typical_pair_gbps(busbw: Mapping[Pair, float]) -> float:
    """The busbw of a typical healthy pair: the median over devices of each one's best pair.

    A slow GPU drags down every pair it is in, so the plain median pair is slow as soon as a
    third of the devices are; each device's best pair is fast unless the device itself is slow.
    """
    best: dict[int, float] = {}
    for pair, value in busbw.items():
        for device in pair:
            best[device] = max(best.get(device, 0.0), value)
    return statistics.median(best.values()) if best else 0.0


@dataclass(frozen=True)
class NodePlan:
    """What a device knows about a node-wide kernel before it meets the others."""

    devices: list[int]  # the node's devices that run this kernel, this one included
    start_spread_s: float = 0.0  # last planned start − first, on the plan's clock
    watchdog_s: float | None = None  # the run's watchdog.timeout_s, where known


def node_plan(device_index: int, peers: Mapping[str, Any]) -> NodePlan:
    """The node's plan for a kernel, from a kernel context's ``peers`` (the worker reads it
    from the run for the kernel it starts, :func:`burnin.worker.node_peers`).

    Without peers (outside a run) the kernel runs alone.

    Raises:
        ValueError: the worker could not read the node's plan (``peers["plan_error"]``).
    """
    if "plan_error" in peers:
        raise ValueError(str(peers["plan_error"]))
    if "devices" in peers:
        devices = sorted(int(d) for d in peers["devices"])
        return NodePlan(devices, float(peers.get("start_spread_s", 0.0)), peers.get("watchdog_s"))
    return NodePlan([device_index])


# ProcessGroupNCCL's ErrorHandlingMode (torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp; the
# variable is documented in docs/source/torch_nccl_environment_variables.md): 0 NoHandling,
# 1 TearDown, 2 CleanUpOnly ("just clean up collectives and abort communicators without tearing
# down process"), 3 SkipCleanUp (tear down without aborting). torch's default, 3, kills every
# rank of a group when one peer times out; 2 lets a rank's watchdog abort the stuck collective
# so the rank returns the timeout error and reports which peer stopped answering.
NCCL_ERROR_HANDLING = "2"
LOOPBACK_ADDR = "127.0.0.1"


def group_env(
    backend: str, single_node: bool, environ: Mapping[str, str], loopback: str | None
) -> dict[str, str]:
    """The environment variables to set before ``init_process_group`` (only those to change).

    Args:
        backend: ``nccl`` or ``gloo``.
        single_node: the group's ranks all run on this host.
        environ: the current environment; a variable the user set is never overridden, except
            the NCCL error handling the harness depends on.
        loopback: the loopback interface's name (``lo``), None if this host has none.
    """
    out: dict[str, str] = {}
    if backend == "nccl":
        out["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = NCCL_ERROR_HANDLING
    if single_node:
        # Ranks of one node talk over loopback: nothing listens on a real interface.
        wanted = {"MASTER_ADDR": LOOPBACK_ADDR}
        if loopback:
            wanted["GLOO_SOCKET_IFNAME"] = wanted["NCCL_SOCKET_IFNAME"] = loopback
        out.update({k: v for k, v in wanted.items() if k not in environ})
    return {k: v for k, v in out.items() if environ.get(k) != v}
